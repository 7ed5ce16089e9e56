//! The native floor: the reference plugins compiled natively, behind the
//! host's slice traits, so the host's own loop runs them with no
//! WebAssembly in between. The ratio of a sandboxed run to this one is what
//! the sandbox costs.

use std::sync::Arc;
use std::time::Instant;

use plugin_sdk as sdk;
use rust_decimal::Decimal;
use strata_host::config::RunConfig;
use strata_host::model::{
    Action, Bar, Fill, Order, OrderEvent, OrderId, OrderType, Regime, Side, Signal, SizingRequest, SliceKind,
    SourceInfo, Symbol, TimeInForce, Timestamp,
};
use strata_host::slice::{
    AnalysisSlice, DataSlice, ExecutionSlice, Failure, RegimeSlice, SizingSlice, Slice, SliceError,
    SliceHealth, SliceLabel, SliceResult, StrategySlice, SymbolSlices,
};

/// A plugin type compiled natively, timed like the host times a component.
pub struct Native<T> {
    plugin: T,
    label: SliceLabel,
    health: SliceHealth,
    /// Reused between calls, as the host reuses its wire buffers.
    bars: Vec<sdk::Bar>,
    width: usize,
}

impl<T> Native<T> {
    pub fn new(kind: SliceKind, name: &str, plugin: T) -> Self {
        let label = SliceLabel { kind, plugin: Arc::from(format!("{name} (native)")) };
        Native { plugin, label, health: SliceHealth::default(), bars: Vec::new(), width: 0 }
    }

    fn timed<R>(&mut self, f: impl FnOnce(&mut Self) -> sdk::Result<R>) -> SliceResult<R> {
        let started = Instant::now();
        let result = f(self);
        let elapsed = started.elapsed();
        self.health.calls += 1;
        self.health.busy += elapsed;
        self.health.slowest_call = self.health.slowest_call.max(elapsed);
        result
            .map_err(|e| SliceError { label: self.label.clone(), failure: Failure::Returned(e.to_string()) })
    }

    fn stage(&mut self, bars: &[Bar]) {
        self.bars.clear();
        self.bars.extend(bars.iter().map(|b| sdk::Bar {
            ts: b.ts,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
        }));
    }
}

impl<T: Send> Slice for Native<T> {
    fn label(&self) -> &SliceLabel {
        &self.label
    }
    fn health(&self) -> SliceHealth {
        self.health.clone()
    }
}

fn from_sdk_bar(b: &sdk::Bar) -> Bar {
    Bar { ts: b.ts, open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume }
}

fn regime(r: sdk::Regime) -> Regime {
    match r {
        sdk::Regime::Unknown => Regime::Unknown,
        sdk::Regime::TrendingUp => Regime::TrendingUp,
        sdk::Regime::TrendingDown => Regime::TrendingDown,
        sdk::Regime::Ranging => Regime::Ranging,
        sdk::Regime::Volatile => Regime::Volatile,
    }
}

fn to_sdk_regime(r: Regime) -> sdk::Regime {
    match r {
        Regime::Unknown => sdk::Regime::Unknown,
        Regime::TrendingUp => sdk::Regime::TrendingUp,
        Regime::TrendingDown => sdk::Regime::TrendingDown,
        Regime::Ranging => sdk::Regime::Ranging,
        Regime::Volatile => sdk::Regime::Volatile,
    }
}

fn action(a: Action) -> sdk::Action {
    match a {
        Action::EnterLong => sdk::Action::EnterLong,
        Action::ExitLong => sdk::Action::ExitLong,
        Action::EnterShort => sdk::Action::EnterShort,
        Action::ExitShort => sdk::Action::ExitShort,
    }
}

impl<T: sdk::DataSource + Send> DataSlice for Native<T> {
    fn open(
        &mut self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> SliceResult<SourceInfo> {
        let range = sdk::TimeRange { start, end };
        let info = self.timed(|s| s.plugin.open(symbol.as_str(), range))?;
        Ok(SourceInfo { description: info.description, synthetic: info.synthetic })
    }

    fn next_batch(&mut self, max: u32, bars: &mut Vec<Bar>) -> SliceResult<()> {
        self.timed(|s| {
            s.bars.clear();
            s.plugin.next_batch(max as usize, &mut s.bars)?;
            bars.extend(s.bars.iter().map(from_sdk_bar));
            Ok(())
        })
    }
}

impl<T: sdk::Analyzer + Send> AnalysisSlice for Native<T> {
    fn outputs(&mut self) -> SliceResult<Vec<String>> {
        self.timed(|s| Ok(s.plugin.outputs()))
    }

    fn update(&mut self, bars: &[Bar], values: &mut Vec<f64>) -> SliceResult<()> {
        self.stage(bars);
        self.timed(|s| s.plugin.update(&s.bars, values))
    }
}

impl<T: sdk::RegimeDetector + Send> RegimeSlice for Native<T> {
    fn classify(&mut self, bars: &[Bar], features: &[f64], regimes: &mut Vec<Regime>) -> SliceResult<()> {
        self.stage(bars);
        self.width = features.len().checked_div(bars.len()).unwrap_or(0);
        self.timed(|s| {
            let mut out = Vec::with_capacity(s.bars.len());
            s.plugin.classify(&s.bars, &sdk::FeatureRows::new(features, s.width), &mut out)?;
            regimes.extend(out.into_iter().map(regime));
            Ok(())
        })
    }
}

impl<T: sdk::Strategy + Send> StrategySlice for Native<T> {
    fn decide(
        &mut self,
        bars: &[Bar],
        features: &[f64],
        regimes: &[Regime],
        signals: &mut Vec<Signal>,
    ) -> SliceResult<()> {
        self.stage(bars);
        self.width = features.len().checked_div(bars.len()).unwrap_or(0);
        self.timed(|s| {
            let regimes: Vec<sdk::Regime> = regimes.iter().map(|r| to_sdk_regime(*r)).collect();
            let mut out = Vec::new();
            s.plugin.decide(&s.bars, &sdk::FeatureRows::new(features, s.width), &regimes, &mut out)?;
            signals.extend(out.into_iter().map(|x| Signal {
                bar_index: x.bar_index,
                action: match x.action {
                    sdk::Action::EnterLong => Action::EnterLong,
                    sdk::Action::ExitLong => Action::ExitLong,
                    sdk::Action::EnterShort => Action::EnterShort,
                    sdk::Action::ExitShort => Action::ExitShort,
                },
                order_type: match x.order_type {
                    sdk::OrderType::Market => OrderType::Market,
                    sdk::OrderType::Limit => OrderType::Limit,
                    sdk::OrderType::Stop => OrderType::Stop,
                    sdk::OrderType::StopLimit => OrderType::StopLimit,
                },
                limit_price: x.limit_price,
                stop_price: x.stop_price,
                time_in_force: match x.time_in_force {
                    sdk::TimeInForce::Gtc => TimeInForce::Gtc,
                    sdk::TimeInForce::Day => TimeInForce::Day,
                    sdk::TimeInForce::Ioc => TimeInForce::Ioc,
                },
            }));
            Ok(())
        })
    }
}

impl<T: sdk::Sizer + Send> SizingSlice for Native<T> {
    fn size(&mut self, r: &SizingRequest) -> SliceResult<Decimal> {
        let request = sdk::SizingRequest {
            symbol: r.symbol.to_string(),
            action: action(r.action),
            ts: r.ts,
            price: r.price,
            equity: r.equity,
            cash: r.cash,
            position: r.position,
        };
        self.timed(|s| s.plugin.size(&request))
    }
}

impl<T: sdk::Executor + Send> ExecutionSlice for Native<T> {
    fn fill_model(&mut self) -> SliceResult<String> {
        self.timed(|s| Ok(s.plugin.fill_model()))
    }

    fn submit(&mut self, o: &Order, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        let order = sdk::Order {
            id: o.id.0,
            symbol: o.symbol.to_string(),
            side: if o.side == Side::Buy { sdk::Side::Buy } else { sdk::Side::Sell },
            quantity: o.quantity,
            order_type: match o.order_type {
                OrderType::Market => sdk::OrderType::Market,
                OrderType::Limit => sdk::OrderType::Limit,
                OrderType::Stop => sdk::OrderType::Stop,
                OrderType::StopLimit => sdk::OrderType::StopLimit,
            },
            limit_price: o.limit_price,
            stop_price: o.stop_price,
            time_in_force: match o.time_in_force {
                TimeInForce::Gtc => sdk::TimeInForce::Gtc,
                TimeInForce::Day => sdk::TimeInForce::Day,
                TimeInForce::Ioc => sdk::TimeInForce::Ioc,
            },
            created_at: o.created_at,
        };
        self.stage(std::slice::from_ref(bar));
        self.timed(|s| {
            let mut out = Vec::new();
            let bar = s.bars[0];
            s.plugin.submit(order, &bar, &mut out)?;
            events.extend(out.into_iter().map(event));
            Ok(())
        })
    }

    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        self.stage(std::slice::from_ref(bar));
        self.timed(|s| {
            let mut out = Vec::new();
            let bar = s.bars[0];
            s.plugin.on_bar(&bar, &mut out)?;
            events.extend(out.into_iter().map(event));
            Ok(())
        })
    }

    fn cancel(&mut self, order_id: OrderId, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        self.timed(|s| {
            let mut out = Vec::new();
            s.plugin.cancel(order_id.0, &mut out)?;
            events.extend(out.into_iter().map(event));
            Ok(())
        })
    }
}

fn event(e: sdk::OrderEvent) -> OrderEvent {
    match e {
        sdk::OrderEvent::Filled(f) => OrderEvent::Filled(Fill {
            order_id: OrderId(f.order_id),
            ts: f.ts,
            price: f.price,
            quantity: f.quantity,
            fee: f.fee,
        }),
        sdk::OrderEvent::Cancelled { order_id, reason } => {
            OrderEvent::Cancelled { order_id: OrderId(order_id), reason }
        }
        sdk::OrderEvent::Rejected { order_id, reason } => {
            OrderEvent::Rejected { order_id: OrderId(order_id), reason }
        }
    }
}

/// A plugin's settings from the run's config file, over its defaults, as the
/// host hands them to a component.
fn settings(config: &RunConfig, kind: SliceKind, manifest: &sdk::Manifest) -> Result<sdk::Config, String> {
    let section = config.slices.get(kind);
    let mut settings = sdk::Config::defaults(manifest);
    for (key, value) in &section.config {
        settings = match value {
            toml::Value::Integer(v) => settings.with(key, *v),
            toml::Value::Float(v) => settings.with(key, *v),
            toml::Value::Boolean(v) => settings.with(key, *v),
            toml::Value::String(v) => settings.with(key, v.as_str()),
            other => return Err(format!("slices.{kind}.config.{key}: the native floor cannot pass {other}")),
        };
    }
    Ok(settings)
}

/// The reference chain of `config` (a data slice of csv-data or
/// synthetic-data, then sma, trend-vol-regime, sma-crossover, fixed-fraction
/// and sim-execution) compiled natively for `symbol`, with the config's
/// settings and its data opened; and its features' names.
pub fn reference_chain(config: &RunConfig, symbol: &Symbol) -> Result<(SymbolSlices, Vec<String>), String> {
    let e = |e: sdk::Error| e.to_string();
    let data = config.slices.get(SliceKind::Data);
    let data_plugin = data.plugin.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    let mut data_slice: Box<dyn DataSlice> = match data_plugin {
        "csv_data.wasm" => {
            let manifest = <csv_data::CsvData as sdk::DataSource>::manifest();
            // Natively the plugin reads the granted folder where it is, not as /data.
            let dir = data.grants.read_dirs.values().next().ok_or("csv-data needs a read-dirs grant")?;
            let cfg = settings(config, SliceKind::Data, &manifest)?
                .with("dir", dir.to_str().ok_or("non-UTF-8 path")?);
            let plugin = <csv_data::CsvData as sdk::DataSource>::new(&cfg).map_err(e)?;
            Box::new(Native::new(SliceKind::Data, "csv-data", plugin))
        }
        "synthetic_data.wasm" => {
            let manifest = <synthetic_data::SyntheticData as sdk::DataSource>::manifest();
            let cfg = settings(config, SliceKind::Data, &manifest)?;
            let plugin = <synthetic_data::SyntheticData as sdk::DataSource>::new(&cfg).map_err(e)?;
            Box::new(Native::new(SliceKind::Data, "synthetic-data", plugin))
        }
        other => return Err(format!("the native floor has no data plugin {other}")),
    };
    data_slice.open(symbol, None, None).map_err(|e| e.to_string())?;

    let manifest = <sma::Sma as sdk::Analyzer>::manifest();
    let sma =
        <sma::Sma as sdk::Analyzer>::new(&settings(config, SliceKind::Analysis, &manifest)?).map_err(e)?;
    let features = sdk::Analyzer::outputs(&sma);
    let names = sdk::FeatureNames::new(features.clone());
    let manifest = <trend_vol_regime::TrendVolRegime as sdk::RegimeDetector>::manifest();
    let cfg = settings(config, SliceKind::Regime, &manifest)?;
    let regime = <trend_vol_regime::TrendVolRegime as sdk::RegimeDetector>::new(&cfg, &names).map_err(e)?;
    let manifest = <sma_crossover::SmaCrossover as sdk::Strategy>::manifest();
    let cfg = settings(config, SliceKind::Strategy, &manifest)?;
    let strategy = <sma_crossover::SmaCrossover as sdk::Strategy>::new(&cfg, &names).map_err(e)?;
    let manifest = <fixed_fraction::FixedFraction as sdk::Sizer>::manifest();
    let sizer =
        <fixed_fraction::FixedFraction as sdk::Sizer>::new(&settings(config, SliceKind::Sizing, &manifest)?)
            .map_err(e)?;
    let manifest = <sim_execution::SimExecution as sdk::Executor>::manifest();
    let exec = <sim_execution::SimExecution as sdk::Executor>::new(&settings(
        config,
        SliceKind::Execution,
        &manifest,
    )?)
    .map_err(e)?;
    let slices = SymbolSlices {
        data: data_slice,
        analysis: Box::new(Native::new(SliceKind::Analysis, "sma", sma)),
        regime: Box::new(Native::new(SliceKind::Regime, "trend-vol-regime", regime)),
        strategy: Box::new(Native::new(SliceKind::Strategy, "sma-crossover", strategy)),
        sizing: Box::new(Native::new(SliceKind::Sizing, "fixed-fraction", sizer)),
        execution: Box::new(Native::new(SliceKind::Execution, "sim-execution", exec)),
    };
    Ok((slices, features))
}
