//! Limits a plugin must not bend (issue #12, class 2): one memory cap for all
//! of an instance's memories and tables, bounded and escaped plugin text, and
//! files that are not regular (FIFOs, devices) or too large refused, never
//! waited on or read whole. Each test runs the real binary and measures the
//! host process's peak memory with `wait4`.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_tests::*;

const MIB: u64 = 1024 * 1024;

/// What one host process did, with its peak resident memory.
struct Measured {
    ran: Ran,
    peak_rss: u64,
    took: Duration,
}

/// Runs `host args` with `env`, reading its output as it comes (so a flood
/// cannot block it), killing it after `limit`, and taking its peak RSS from
/// the kernel's record of exactly this child.
fn host_measured(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Measured {
    let started = Instant::now();
    let mut child = Command::new(host_bin())
        .args(args)
        .current_dir(repo())
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_DATA_DIR")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start host");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: signal 0 only asks whether the process exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                return;
            }
        }
        // SAFETY: `pid` is our child, not yet reaped (wait4 below reaps it).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let mut status = 0;
    // SAFETY: plain FFI out-parameters; `pid` is our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    let took = started.elapsed();
    watchdog.join().unwrap();
    let status = std::process::ExitStatus::from_raw(status);
    std::mem::forget(child); // already reaped
    let ran = Ran { code: status.code(), stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() };
    // ru_maxrss is in KiB on Linux.
    Measured { ran, peak_rss: usage.ru_maxrss as u64 * 1024, took }
}

/// A config running the reference chain on the synthetic BTC-USD sample,
/// with `plugin` in slot `kind`.
fn config_with(dir: &Path, kind: &'static str, plugin: &Path, settings: &str) -> PathBuf {
    let plugin = plugin.to_owned();
    let config = ConfigFile::reference(&repo().join("data")).slice(kind, |s| {
        s.plugin = plugin;
        s.config = settings.into();
    });
    config.write(dir)
}

// ---- 1. one memory cap per instance ----

/// A sizing component in component-model text whose core module declares
/// `memories` memories of one page and `tables` tables of `table_elements`
/// funcrefs. Its `describe` grows every memory by `grow_pages` pages and
/// touches each page it got; if any growth is refused it traps at once.
fn greedy_component(memories: u32, grow_pages: u32, tables: u32, table_elements: u32) -> Vec<u8> {
    let mut module = String::new();
    for m in 0..memories {
        module += &format!("(memory $m{m} {})\n", if m == 0 { "(export \"memory\") 1" } else { "1" });
    }
    for _ in 0..tables {
        module += &format!("(table {table_elements} funcref)\n");
    }
    let mut grow = String::new();
    for m in 0..memories {
        // memory.grow answers -1 when refused: trap then, as a slice's allocator would.
        grow += &format!(
            "(if (i32.eq (memory.grow $m{m} (i32.const {grow_pages})) (i32.const -1)) (then unreachable))
             (memory.fill $m{m} (i32.const 0) (i32.const 1) (i32.mul (i32.const {grow_pages}) (i32.const 65536)))\n"
        );
    }
    let wat = format!(
        r#"(component
  (core module $m
    {module}
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 8))
    (func (export "describe") (result i32) {grow} unreachable)
    (func (export "init") (param i32 i32) (result i32) unreachable)
    (func (export "size") (param i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32 i32) (result i32) unreachable)
  )
  (core instance $i (instantiate $m))
  (type $kind' (enum "data" "analysis" "regime" "strategy" "sizing" "execution"))
  (export $kind "slice-kind" (type $kind'))
  (type $value' (variant (case "boolean" bool) (case "integer" s64) (case "float" f64) (case "text" string)))
  (export $value "config-value" (type $value'))
  (type $entry' (record (field "key" string) (field "value" $value)))
  (export $entry "config-entry" (type $entry'))
  (type $param' (record (field "key" string) (field "description" string) (field "default-value" $value)))
  (export $param "config-param" (type $param'))
  (type $info' (record (field "name" string) (field "version" string) (field "kind" $kind)
    (field "interface-version" string) (field "description" string) (field "params" (list $param))))
  (export $info "plugin-info" (type $info'))
  (type $action' (enum "enter-long" "exit-long" "enter-short" "exit-short"))
  (export $action "action" (type $action'))
  (type $request' (record (field "symbol" string) (field "action" $action) (field "ts" s64)
    (field "price" string) (field "equity" string) (field "cash" string) (field "position" string)))
  (export $request "sizing-request" (type $request'))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "realloc" (core func $realloc))
  (alias core export $i "describe" (core func $describe-core))
  (alias core export $i "init" (core func $init-core))
  (alias core export $i "size" (core func $size-core))
  (type $describe-ty (func (result $info)))
  (type $init-ty (func (param "config" (list $entry)) (result (result (error string)))))
  (type $size-ty (func (param "request" $request) (result (result string (error string)))))
  (func $describe (type $describe-ty) (canon lift (core func $describe-core) (memory $mem) (realloc $realloc)))
  (func $init (type $init-ty) (canon lift (core func $init-core) (memory $mem) (realloc $realloc)))
  (func $size (type $size-ty) (canon lift (core func $size-core) (memory $mem) (realloc $realloc)))
  (instance $sizing
    (export "describe" (func $describe))
    (export "init" (func $init))
    (export "size" (func $size)))
  (export "strata:plugin/sizing@0.1.0" (instance $sizing))
)"#
    );
    wat::parse_str(&wat).expect("the test's component text is valid")
}

/// Peak RSS allowed where a plugin tries to take gigabytes: the host's own
/// working set (runtime, compiled components, one symbol's bars) is well
/// under 200 MiB, plus at most one instance's 256 MiB default cap.
const RSS_UNDER_CAP: u64 = 600 * MIB;

#[test]
fn sixteen_memories_share_one_cap() {
    let dir = tempdir();
    let wasm = dir.path().join("greedy.wasm");
    // 16 memories grown by 1600 pages (100 MiB) each: 1.6 GiB if the cap were
    // per memory (each is under the 256 MiB default), refused at the third.
    std::fs::write(&wasm, greedy_component(16, 1600, 0, 0)).unwrap();
    let config = config_with(dir.path(), "sizing", &wasm, "");
    let out = dir.path().join("out");
    let m = host_measured(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--symbols",
            "BTC-USD",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    );
    m.ran.assert_fails_with(&[
        "greedy.wasm",
        "memories and tables past the instance's cap of 256 MiB",
        "limits.memory-mib",
    ]);
    assert!(m.peak_rss < RSS_UNDER_CAP, "peak RSS {} MiB", m.peak_rss / MIB);
}

#[test]
fn tables_count_against_the_cap_and_an_instance_that_cannot_fit_is_refused() {
    let dir = tempdir();
    let wasm = dir.path().join("tables.wasm");
    // 40 tables of 2^20 elements at 8 bytes each: 320 MiB before any memory
    // grows, over the 256 MiB default, so instantiation itself must fail.
    std::fs::write(&wasm, greedy_component(1, 1, 40, 1 << 20)).unwrap();
    let config = config_with(dir.path(), "sizing", &wasm, "");
    let m = host_measured(&["config", "check", config.to_str().unwrap()], &[], Duration::from_secs(60));
    m.ran.assert_fails_with(&["tables.wasm", "instantiation failed", "growing a table", "cap of 256 MiB"]);
    assert!(m.peak_rss < RSS_UNDER_CAP, "peak RSS {} MiB", m.peak_rss / MIB);
}

#[test]
fn config_check_refuses_a_memory_cap_too_small_to_work() {
    let dir = tempdir();
    let mut config = ConfigFile::reference(&repo().join("data"));
    config.slices.get_mut("strategy").unwrap().extra.push("limits = { memory-mib = 1 }".into());
    let path = config.write(dir.path());
    host(&["config", "check", path.to_str().unwrap()])
        .assert_fails_with(&["slices.strategy.limits.memory-mib must be between 4 and 65536, got 1"]);

    // The minimum is one that works: the whole reference chain, every slice
    // capped at 4 MiB, runs eleven years of daily BTC.
    let mut config = ConfigFile::reference(&shared_data());
    for kind in ["data", "analysis", "regime", "strategy", "sizing", "execution"] {
        config.slices.get_mut(kind).unwrap().extra.push("limits = { memory-mib = 4 }".into());
    }
    let path = config.write(dir.path());
    let out = dir.path().join("out-4mib");
    let ran = host(&[
        "run",
        "--config",
        path.to_str().unwrap(),
        "--symbols",
        "BTC-USD-1d",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ran.ok(), "the reference chain at the minimum cap failed: {ran:#?}");
}

// ---- 2. plugin text is bounded and escaped ----

#[test]
fn a_flood_of_plugin_text_stays_small_and_cannot_forge_host_lines() {
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Ten daily bars; the sixth carries the volume the fixture reacts to.
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    for day in 1..=10 {
        let volume = if day == 6 { 666 } else { 10 };
        csv += &format!("2024-01-{day:02},100,101,99,100,{volume}\n");
    }
    std::fs::write(data.join("X.csv"), csv).unwrap();
    let plugin = component("hostile-text");
    let config = ConfigFile::reference(&data).slice("strategy", |s| s.plugin = plugin).write(dir.path());
    let out = dir.path().join("out");
    let m = host_measured(
        &["run", "--config", config.to_str().unwrap(), "--symbols", "X", "--out", out.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    m.ran.assert_fails_with(&["hostile-text 0.1.0", "FORGED-BY-PLUGIN", "cut at byte"]);
    // The plugin's 50 MB error and 4 KiB+ log record, each cut to 4 KiB.
    assert!(m.ran.stderr.len() < 64 * 1024, "stderr is {} bytes", m.ran.stderr.len());
    assert!(!m.ran.stderr.contains('\x1b'), "a terminal escape reached stderr");
    assert!(!m.ran.stderr.contains('\u{2028}'), "a line separator reached stderr");
    for line in m.ran.stderr.lines() {
        assert!(!line.starts_with("FORGED-BY-PLUGIN"), "the plugin started a line of its own: {line}");
    }
    let summary = std::fs::metadata(out.join("summary.json")).expect("summary.json written").len();
    assert!(summary < MIB, "summary.json is {summary} bytes");
    let status = read_summary(&out);
    assert!(status.to_string().contains("FORGED-BY-PLUGIN"), "summary.json keeps the (cut) error");
    // The guest builds 50 MB in its own memory (counted, under the cap) and
    // the host copies it once before cutting it: well under 2 x 256 MiB.
    assert!(m.peak_rss < 400 * MIB, "peak RSS {} MiB", m.peak_rss / MIB);
}

// ---- 3. files that are not regular, or too large ----

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

#[test]
fn a_fifo_in_a_granted_directory_ends_the_run_in_seconds() {
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // csv-data opens /data/PIPE.csv through WASI; with no writer, opening a
    // FIFO would block that host call forever, past every deadline.
    mkfifo(&data.join("PIPE.csv"));
    let config = ConfigFile::reference(&data).write(dir.path());
    let out = dir.path().join("out");
    let m = host_measured(
        &["run", "--config", config.to_str().unwrap(), "--symbols", "PIPE", "--out", out.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    // Refused when the data slice opens it, before the first bar: the
    // message names the slice, the file and where the sandbox maps it.
    m.ran.assert_fails_with(&["csv-data", "/data/PIPE.csv", "not permitted", &data.display().to_string()]);
    // The call deadline is 1 s; the refusal takes none of it.
    assert!(m.took < Duration::from_secs(20), "took {:?}", m.took);
}

#[test]
fn configs_that_are_devices_fifos_or_huge_are_refused_at_once() {
    let dir = tempdir();
    let fifo = dir.path().join("config.fifo");
    mkfifo(&fifo);
    let link = dir.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    // Sparse: 3 GiB long, no disk used; the cap is 1 MiB.
    let huge = dir.path().join("huge.toml");
    std::fs::File::create(&huge).unwrap().set_len(3 << 30).unwrap();
    let (fifo, link, huge) = (fifo.to_str().unwrap(), link.to_str().unwrap(), huge.to_str().unwrap());
    // (arguments, environment, fragments the error must show)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 5] = [
        (&["config", "check", "/dev/zero"], &[], &["/dev/zero", "character device, not a regular file"]),
        (&["config", "check", link], &[], &[link, "character device, not a regular file"]),
        (
            &["run", "--symbols", "BTC-USD"],
            &[("STRATA_CONFIG", "/dev/zero")],
            &["/dev/zero", "not a regular file"],
        ),
        (
            &["run", "--config", fifo, "--symbols", "BTC-USD"],
            &[],
            &[fifo, "FIFO (named pipe), not a regular file"],
        ),
        (&["config", "check", huge], &[], &[huge, "3221225472 bytes, more than the 1048576 allowed"]),
    ];
    for (args, env, fragments) in cases {
        let m = host_measured(args, env, Duration::from_secs(30));
        m.ran.assert_fails_with(fragments);
        assert!(m.took < Duration::from_secs(10), "{args:?} took {:?}", m.took);
        assert!(m.peak_rss < 100 * MIB, "{args:?}: peak RSS {} MiB", m.peak_rss / MIB);
    }
}

#[test]
fn plugins_that_are_fifos_or_huge_are_refused_at_once() {
    let dir = tempdir();
    let fifo = dir.path().join("strategy.wasm");
    mkfifo(&fifo);
    // Sparse, one byte over the 256 MiB plugin cap.
    let huge = dir.path().join("huge.wasm");
    std::fs::File::create(&huge).unwrap().set_len((256 << 20) + 1).unwrap();
    for (plugin, fragment) in [
        (&fifo, "FIFO (named pipe), not a regular file"),
        (&huge, "268435457 bytes, more than the 268435456 allowed"),
    ] {
        let config = config_with(dir.path(), "strategy", plugin, "");
        let m = host_measured(&["config", "check", config.to_str().unwrap()], &[], Duration::from_secs(30));
        m.ran.assert_fails_with(&[&plugin.display().to_string(), fragment]);
        assert!(m.took < Duration::from_secs(10), "{} took {:?}", plugin.display(), m.took);
    }
}
