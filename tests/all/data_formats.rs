//! Input formats besides the project's CSV: Yahoo Finance downloads (read by
//! csv-data) and Parquet (read by the parquet-data slice). Each file is made
//! at test time from the real series in ../shared/data, and a backtest on it
//! must produce the very same trades and equity as one on the original CSV.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, GzipLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, FloatType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use strata_tests::*;

use crate::report::day_number;

/// Runs the reference chain with `data` as the data slice's folder (and
/// `plugin` as its component); returns the run folder.
fn backtest(out: &Path, name: &str, data: &Path, plugin: &str, symbol: &str) -> Result<PathBuf, Ran> {
    let config = ConfigFile::reference(data).slice("data", |s| s.plugin = component(plugin));
    let dir = out.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config.write(&dir);
    let run = dir.join("run");
    let ran = host(&[
        "run",
        "--symbols",
        symbol,
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    if ran.ok() { Ok(run) } else { Err(ran) }
}

fn assert_same_run(a: &Path, b: &Path) {
    for file in ["trades.csv", "equity.csv", "orders.csv"] {
        let (x, y) = (std::fs::read(a.join(file)).unwrap(), std::fs::read(b.join(file)).unwrap());
        assert!(x == y, "{file} differs between {} and {}", a.display(), b.display());
    }
}

/// Rows of a shared data file: timestamp text and the five numbers as text.
fn shared_rows(file: &str) -> Vec<(String, [String; 5])> {
    let text = std::fs::read_to_string(shared_data().join(file)).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), [f[1], f[2], f[3], f[4], f[5]].map(str::to_owned))
        })
        .collect()
}

#[test]
fn yahoo_downloads_give_the_same_backtest_as_the_project_format() {
    let out = tempdir();
    let yahoo = out.path().join("yahoo");
    std::fs::create_dir(&yahoo).unwrap();
    // ETH-USD-1d.csv came from a Yahoo download; put it back in that layout,
    // with Adj Close = Close as Yahoo gives for crypto, and a null day Yahoo
    // sometimes inserts (here, a duplicate of a real day, which must be skipped).
    let mut text = String::from("Date,Open,High,Low,Close,Adj Close,Volume\n");
    for (i, (ts, [open, high, low, close, volume])) in shared_rows("ETH-USD-1d.csv").iter().enumerate() {
        text += &format!("{},{open},{high},{low},{close},{close},{volume}\n", &ts[..10]);
        if i == 100 {
            text += &format!("{},null,null,null,null,null,null\n", &ts[..10]);
        }
    }
    std::fs::write(yahoo.join("ETH-USD-1d.csv"), text).unwrap();
    let from_yahoo = backtest(out.path(), "yahoo-run", &yahoo, "csv-data", "ETH-USD-1d")
        .unwrap_or_else(|r| panic!("{r:#?}"));
    let original = backtest(out.path(), "csv-run", &shared_data(), "csv-data", "ETH-USD-1d")
        .unwrap_or_else(|r| panic!("{r:#?}"));
    assert_same_run(&from_yahoo, &original);
    assert!(read_trades(&original).len() > 20);
    let summary = read_summary(&from_yahoo);
    let source = summary["data"][0]["source"]["description"].as_str().unwrap();
    assert!(source.contains("Yahoo Finance CSV: Close used, Adj Close ignored"), "{source}");

    // A bad Yahoo row is named by file, line and field.
    std::fs::write(
        yahoo.join("BAD.csv"),
        "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-01,1,2,0.5,1,1,10\n2024-01-02,1,2,0.5,null,1,10\n",
    )
    .unwrap();
    let ran = backtest(out.path(), "bad", &yahoo, "csv-data", "BAD").unwrap_err();
    ran.assert_fails_with(&["/data/BAD.csv line 3", "field `close`: `null` is not a number"]);
}

/// How a test Parquet file stores its columns.
struct Layout {
    schema: &'static str,
    compression: Compression,
    row_group: usize,
    /// The time column: Unix nanoseconds or milliseconds.
    nanos: bool,
    floats: bool,
    extra_symbol_column: bool,
}

/// Writes `rows` as a Parquet file; the values go in as the floats the CSV text names.
fn write_parquet(path: &Path, rows: &[(String, [String; 5])], layout: &Layout) {
    let schema = Arc::new(parse_message_type(layout.schema).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(layout.compression).build());
    let mut writer = SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    for chunk in rows.chunks(layout.row_group) {
        let mut group = writer.next_row_group().unwrap();
        let ms: Vec<i64> =
            chunk.iter().map(|(ts, _)| (day_number(ts) * 86_400.0).round() as i64 * 1000).collect();
        let mut column = group.next_column().unwrap().unwrap();
        let times: Vec<i64> = ms.iter().map(|m| if layout.nanos { m * 1_000_000 } else { *m }).collect();
        column.typed::<Int64Type>().write_batch(&times, None, None).unwrap();
        column.close().unwrap();
        for i in 0..5 {
            let mut column = group.next_column().unwrap().unwrap();
            let values: Vec<f64> = chunk.iter().map(|(_, v)| v[i].parse().unwrap()).collect();
            if layout.floats && i < 4 {
                let values: Vec<f32> = values.iter().map(|v| *v as f32).collect();
                column.typed::<FloatType>().write_batch(&values, None, None).unwrap();
            } else {
                column.typed::<DoubleType>().write_batch(&values, None, None).unwrap();
            }
            column.close().unwrap();
        }
        if layout.extra_symbol_column {
            let mut column = group.next_column().unwrap().unwrap();
            let names: Vec<ByteArray> = chunk.iter().map(|_| ByteArray::from("BTC-USD")).collect();
            column.typed::<ByteArrayType>().write_batch(&names, None, None).unwrap();
            column.close().unwrap();
        }
        group.close().unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn parquet_files_give_the_same_backtest_as_csv() {
    let out = tempdir();
    let dir = out.path().join("parquet");
    std::fs::create_dir(&dir).unwrap();
    // As pandas writes a yfinance frame: `Date` in nanoseconds, capitalised names, snappy.
    let pandas = Layout {
        schema: "message schema { required int64 Date (TIMESTAMP(NANOS,false)); required double Open; \
                 required double High; required double Low; required double Close; required double Volume; }",
        compression: Compression::SNAPPY,
        row_group: 1_000,
        nanos: true,
        floats: false,
        extra_symbol_column: false,
    };
    write_parquet(&dir.join("BTC-USD-1d.parquet"), &shared_rows("BTC-USD-1d.csv"), &pandas);
    let parquet =
        backtest(out.path(), "pq", &dir, "parquet-data", "BTC-USD-1d").unwrap_or_else(|r| panic!("{r:#?}"));
    let csv = backtest(out.path(), "csv", &shared_data(), "csv-data", "BTC-USD-1d")
        .unwrap_or_else(|r| panic!("{r:#?}"));
    assert_same_run(&parquet, &csv);
    let summary = read_summary(&parquet);
    assert_eq!(summary["bars"], 4_090);
    let source = summary["data"][0]["source"]["description"].as_str().unwrap();
    assert!(source.contains("BTC-USD-1d.parquet (Parquet, 4090 rows)"), "{source}");

    // Milliseconds, float32 prices, gzip and an extra text column. The CSV
    // twin holds the same float32 values (rounding to float32 keeps low <=
    // open, close <= high, as it is monotonic).
    let hourly = Layout {
        schema: "message schema { required int64 timestamp (TIMESTAMP(MILLIS,true)); required float open; \
                 required float high; required float low; required float close; required double volume; \
                 required binary symbol (UTF8); }",
        compression: Compression::GZIP(GzipLevel::default()),
        row_group: 4_096,
        nanos: false,
        floats: true,
        extra_symbol_column: true,
    };
    let rows: Vec<(String, [String; 5])> = shared_rows("BTC-USD-1h.csv")
        .into_iter()
        .map(|(ts, v)| {
            let f = |i: usize| {
                if i < 4 { ((v[i].parse::<f64>().unwrap() as f32) as f64).to_string() } else { v[i].clone() }
            };
            (ts, [f(0), f(1), f(2), f(3), f(4)])
        })
        .collect();
    assert_eq!(rows.len(), 37_386);
    write_parquet(&dir.join("BTC-USD-1h.parquet"), &rows, &hourly);
    let twin = out.path().join("twin");
    std::fs::create_dir(&twin).unwrap();
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    for (ts, v) in &rows {
        text += &format!("{ts},{}\n", v.join(","));
    }
    std::fs::write(twin.join("BTC-USD-1h.csv"), text).unwrap();
    let parquet = backtest(out.path(), "pq-1h", &dir, "parquet-data", "BTC-USD-1h")
        .unwrap_or_else(|r| panic!("{r:#?}"));
    let csv =
        backtest(out.path(), "csv-1h", &twin, "csv-data", "BTC-USD-1h").unwrap_or_else(|r| panic!("{r:#?}"));
    assert_same_run(&parquet, &csv);
    assert!(read_trades(&csv).len() > 500);
}

#[test]
fn bad_parquet_files_are_named_with_their_row_and_column() {
    let out = tempdir();
    let dir = out.path().join("parquet");
    std::fs::create_dir(&dir).unwrap();
    let layout = |schema| Layout {
        schema,
        compression: Compression::UNCOMPRESSED,
        row_group: 2,
        nanos: false,
        floats: false,
        extra_symbol_column: false,
    };
    let good = "message schema { required int64 timestamp (TIMESTAMP(MILLIS,true)); required double open; \
                required double high; required double low; required double close; required double volume; }";
    let row = |ts: &str, v: [&str; 5]| (ts.to_owned(), v.map(str::to_owned));
    // Row 3 has its high below its low.
    let rows = [
        row("2024-01-01", ["10", "11", "9", "10", "5"]),
        row("2024-01-02", ["10", "11", "9", "10.5", "5"]),
        row("2024-01-03", ["10", "8", "9", "10", "5"]),
    ];
    write_parquet(&dir.join("BADROW.parquet"), &rows, &layout(good));
    let ran = backtest(out.path(), "badrow", &dir, "parquet-data", "BADROW").unwrap_err();
    ran.assert_fails_with(&["/data/BADROW.parquet row 3", "inconsistent prices"]);
    // Out of order.
    let rows =
        [row("2024-01-02", ["10", "11", "9", "10", "5"]), row("2024-01-01", ["10", "11", "9", "10", "5"])];
    write_parquet(&dir.join("ORDER.parquet"), &rows, &layout(good));
    let ran = backtest(out.path(), "order", &dir, "parquet-data", "ORDER").unwrap_err();
    ran.assert_fails_with(&[
        "/data/ORDER.parquet row 2",
        "time 2024-01-01T00:00:00Z is before the previous row's 2024-01-02T00:00:00Z",
    ]);
    // No volume column.
    let no_volume = "message schema { required int64 timestamp (TIMESTAMP(MILLIS,true)); required double open; \
                     required double high; required double low; required double close; required double vol; }";
    write_parquet(&dir.join("NOVOL.parquet"), &rows, &layout(no_volume));
    let ran = backtest(out.path(), "novol", &dir, "parquet-data", "NOVOL").unwrap_err();
    ran.assert_fails_with(&[
        "/data/NOVOL.parquet: no `volume` column (the file has timestamp, open, high, low, close, vol)",
    ]);
    // Not Parquet at all, and a missing symbol.
    std::fs::write(dir.join("TEXT.parquet"), "timestamp,open\n").unwrap();
    let ran = backtest(out.path(), "text", &dir, "parquet-data", "TEXT").unwrap_err();
    ran.assert_fails_with(&["/data/TEXT.parquet is not a readable Parquet file"]);
    let ran = backtest(out.path(), "missing", &dir, "parquet-data", "NOPE").unwrap_err();
    ran.assert_fails_with(&[
        "no data file /data/NOPE.parquet for NOPE",
        "available: BADROW, NOVOL, ORDER, TEXT",
    ]);
}
