//! The search space: which settings of which slices vary, over which
//! values, under which constraints. Built from `[optimize.space]` and
//! checked against what each component declares it accepts, so a typo in a
//! setting's name or a value of the wrong type is refused before any trial
//! runs, with the line of the config it is on.

use std::collections::BTreeMap;

use super::config::OptimizeSection;
use super::constraint::Constraint;
use super::rng::Rng;
use crate::config::setting_value;
use crate::model::{ConfigParam, ConfigValue, SliceKind};
use crate::session::Settings;

/// One value per parameter, in the order of [`SearchSpace::parameters`].
pub type Point = Vec<ConfigValue>;

/// A setting of one slice that varies between trials.
#[derive(Debug, Clone)]
pub struct Parameter {
    /// `analysis.fast`: the slice kind and the setting's key.
    pub name: String,
    pub kind: SliceKind,
    pub key: String,
    pub domain: Domain,
}

/// The values a parameter takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Listed values, in the order given.
    List(Vec<ConfigValue>),
    /// `from`, `from + step`, ... up to `to` (included when it is on the steps).
    Range { values: Vec<ConfigValue>, step: f64 },
    /// Any value between `lo` and `hi` (whole numbers for an integer
    /// setting), uniform or log-uniform. Only random and TPE sampling draw
    /// from it: a grid cannot enumerate it.
    Uniform { lo: f64, hi: f64, log: bool, integer: bool },
}

impl Domain {
    /// The values a grid goes through, if it can.
    pub fn grid_values(&self) -> Option<&[ConfigValue]> {
        match self {
            Domain::List(v) | Domain::Range { values: v, .. } => Some(v),
            Domain::Uniform { .. } => None,
        }
    }

    /// A uniform draw.
    pub fn sample(&self, rng: &mut Rng) -> ConfigValue {
        match self {
            Domain::List(v) | Domain::Range { values: v, .. } => {
                v[rng.below(v.len() as u64) as usize].clone()
            }
            Domain::Uniform { lo, hi, log, integer } => {
                let u = rng.unit();
                let x = if *log { (lo.ln() + u * (hi.ln() - lo.ln())).exp() } else { lo + u * (hi - lo) };
                if *integer {
                    // Whole numbers in [lo, hi], each as likely (on a linear scale).
                    let n = (hi - lo) as u64 + 1;
                    let v = if *log { x.round().clamp(*lo, *hi) } else { lo + rng.below(n) as f64 };
                    ConfigValue::Int(v as i64)
                } else {
                    ConfigValue::Float(significant(x).clamp(*lo, *hi))
                }
            }
        }
    }

    /// How the report describes it.
    pub fn describe(&self) -> String {
        let list = |v: &[ConfigValue]| v.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
        match self {
            Domain::List(v) => format!("[{}]", list(v)),
            Domain::Range { values, step } => format!(
                "{} to {} step {} ({} values)",
                values[0],
                values[values.len() - 1],
                trim(*step),
                values.len()
            ),
            Domain::Uniform { lo, hi, log, integer } => format!(
                "{}{} between {} and {}",
                if *log { "log-uniform" } else { "uniform" },
                if *integer { " integers" } else { "" },
                trim(*lo),
                trim(*hi)
            ),
        }
    }
}

fn trim(v: f64) -> String {
    ConfigValue::Float(v).to_string().trim_end_matches(".0").to_owned()
}

/// `x` to 6 significant digits: drawn values read well in files and
/// reports, and no search is finer than that.
pub fn significant(x: f64) -> f64 {
    format!("{x:.5e}").parse().unwrap_or(x)
}

/// A number for a value, if it has one (booleans are 0 and 1).
pub fn numeric(v: &ConfigValue) -> Option<f64> {
    match v {
        ConfigValue::Int(i) => Some(*i as f64),
        ConfigValue::Float(f) => Some(*f),
        ConfigValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        ConfigValue::Text(_) => None,
    }
}

/// What a name in a constraint stands for.
#[derive(Debug, Clone, Copy)]
enum Operand {
    Parameter(usize),
    /// A setting that does not vary: its value in the config (or its default).
    Fixed(f64),
}

#[derive(Debug, Clone)]
pub struct SearchSpace {
    pub parameters: Vec<Parameter>,
    pub constraints: Vec<Constraint>,
    operands: BTreeMap<String, Operand>,
    /// The two parameters of the report's heat map (one when there is one).
    pub heatmap: Vec<usize>,
}

/// What the search space needs to know about the loaded components.
pub struct Declared<'a> {
    /// A slice's plugin label (`sma 0.1.0`) and declared settings.
    pub plugins: BTreeMap<SliceKind, (String, &'a [ConfigParam])>,
    /// Every slice's settings in the config.
    pub settings: &'a Settings,
}

/// The line of the config file a span starts on, as `(line N)`, when the text is known.
pub fn line_note(text: Option<&str>, span: std::ops::Range<usize>) -> String {
    match text {
        Some(t) if span.start <= t.len() => format!(" (line {})", t[..span.start].matches('\n').count() + 1),
        _ => String::new(),
    }
}

impl SearchSpace {
    /// Checks `[optimize.space]`, the constraints and the heat map against
    /// what the components declare. Every problem is reported, each naming
    /// its key and line; `text` is the config file's text, for the lines.
    pub fn new(
        section: &OptimizeSection,
        declared: &Declared,
        text: Option<&str>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut parameters = Vec::new();
        for name in section.space.keys() {
            if SliceKind::from_name(name).is_none() {
                let kinds: Vec<&str> = SliceKind::ALL.iter().map(|k| k.as_str()).collect();
                problems.push(format!(
                    "optimize.space.{name}: `{name}` is not a slice kind (one of {})",
                    kinds.join(", ")
                ));
            }
        }
        // Chain order, then the order the component declares its settings in.
        for kind in SliceKind::ALL {
            let Some(entries) = section.space.get(kind.as_str()) else { continue };
            let (label, params) = &declared.plugins[&kind];
            for (key, value) in entries {
                let at = format!("optimize.space.{kind}.{key}{}", line_note(text, value.span()));
                let Some(param) = params.iter().find(|p| &p.key == key) else {
                    let accepted: Vec<&str> = params.iter().map(|p| p.key.as_str()).collect();
                    problems.push(format!(
                        "{at}: {label} has no setting `{key}` (it accepts: {})",
                        if accepted.is_empty() { "none".to_owned() } else { accepted.join(", ") }
                    ));
                    continue;
                };
                match domain(value.get_ref(), &param.default) {
                    Ok(domain) => parameters.push(Parameter {
                        name: format!("{kind}.{key}"),
                        kind,
                        key: key.clone(),
                        domain,
                    }),
                    Err(e) => problems.push(format!("{at}: {e}")),
                }
            }
        }
        if section.space.is_empty() {
            problems.push(
                "optimize.space is empty: list at least one setting to vary, for example \
                 [optimize.space.analysis] fast = [5, 10, 20]"
                    .to_owned(),
            );
        }

        let mut operands = BTreeMap::new();
        for (i, p) in parameters.iter().enumerate() {
            operands.insert(p.name.clone(), Operand::Parameter(i));
        }
        let mut constraints = Vec::new();
        for spanned in &section.constraints {
            let at = format!("optimize.constraints{}", line_note(text, spanned.span()));
            let text = spanned.get_ref();
            let constraint = match Constraint::parse(text) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("{at}: `{text}`: {e}"));
                    continue;
                }
            };
            let mut ok = true;
            for name in constraint.names() {
                if operands.contains_key(name) {
                    continue;
                }
                match fixed_operand(name, declared) {
                    Ok(v) => {
                        operands.insert(name.to_owned(), Operand::Fixed(v));
                    }
                    Err(e) => {
                        problems.push(format!("{at}: `{text}`: {e}"));
                        ok = false;
                    }
                }
            }
            if let Some(p) = constraint
                .names()
                .iter()
                .filter_map(|n| parameters.iter().find(|p| &p.name == n))
                .find(|p| p.domain.grid_values().is_some_and(|v| v.iter().any(|v| numeric(v).is_none())))
            {
                problems.push(format!("{at}: `{text}`: {} is text, and constraints compare numbers", p.name));
                ok = false;
            }
            if ok {
                constraints.push(constraint);
            }
        }

        let mut heatmap = Vec::new();
        match &section.heatmap {
            Some(names) => {
                let at = format!("optimize.heatmap{}", line_note(text, names.span()));
                let names = names.get_ref();
                if names.len() != 2 || names[0] == names[1] {
                    problems.push(format!("{at}: name two different parameters of optimize.space"));
                }
                for name in names {
                    // A setting of the space with a problem of its own is reported once, above.
                    let listed = name.split_once('.').is_some_and(|(kind, key)| {
                        section.space.get(kind).is_some_and(|s| s.contains_key(key))
                    });
                    match parameters.iter().position(|p| &p.name == name) {
                        Some(i) => heatmap.push(i),
                        None if listed => {}
                        None => problems.push(format!(
                            "{at}: `{name}` is not a parameter of optimize.space (they are: {})",
                            parameters.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                        )),
                    }
                }
            }
            None => heatmap = (0..parameters.len().min(2)).collect(),
        }

        if problems.is_empty() {
            Ok(SearchSpace { parameters, constraints, operands, heatmap })
        } else {
            Err(problems)
        }
    }

    /// Whether `point` meets every constraint.
    pub fn allows(&self, point: &Point) -> bool {
        let value_of = |name: &str| match self.operands.get(name) {
            Some(Operand::Parameter(i)) => numeric(&point[*i]).unwrap_or(f64::NAN),
            Some(Operand::Fixed(v)) => *v,
            None => f64::NAN,
        };
        self.constraints.iter().all(|c| c.holds(&value_of))
    }

    /// The grid's size, if every parameter can be enumerated (saturating).
    pub fn grid_size(&self) -> Option<u64> {
        self.parameters
            .iter()
            .try_fold(1u64, |n, p| p.domain.grid_values().map(|v| n.saturating_mul(v.len() as u64)))
    }

    /// Every combination, the first parameter varying slowest, minus those
    /// that break a constraint (counted).
    pub fn grid(&self) -> (Vec<Point>, u64) {
        let lists: Vec<&[ConfigValue]> =
            self.parameters.iter().map(|p| p.domain.grid_values().expect("checked: enumerable")).collect();
        let mut points = Vec::new();
        let mut skipped = 0;
        let mut index = vec![0usize; lists.len()];
        loop {
            let point: Point = index.iter().zip(&lists).map(|(&i, l)| l[i].clone()).collect();
            if self.allows(&point) {
                points.push(point);
            } else {
                skipped += 1;
            }
            // The odometer: the last digit turns fastest.
            let mut d = lists.len();
            loop {
                if d == 0 {
                    return (points, skipped);
                }
                d -= 1;
                index[d] += 1;
                if index[d] < lists[d].len() {
                    break;
                }
                index[d] = 0;
            }
        }
    }

    /// A point drawn uniformly from every parameter's domain.
    pub fn sample(&self, rng: &mut Rng) -> Point {
        self.parameters.iter().map(|p| p.domain.sample(rng)).collect()
    }

    /// The slices' settings for `point`: the config's, with the point's values.
    pub fn settings(&self, base: &Settings, point: &Point) -> Settings {
        let mut settings = base.clone();
        for (p, value) in self.parameters.iter().zip(point) {
            let slice = settings.get_mut(&p.kind).expect("every slice has settings");
            match slice.iter_mut().find(|(k, _)| k == &p.key) {
                Some(entry) => entry.1 = value.clone(),
                None => slice.push((p.key.clone(), value.clone())),
            }
        }
        settings
    }

    /// `{"analysis.fast": 10, ...}`: how files name a point.
    pub fn to_json(&self, point: &Point) -> serde_json::Map<String, serde_json::Value> {
        self.parameters
            .iter()
            .zip(point)
            .map(|(p, v)| (p.name.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null)))
            .collect()
    }
}

impl SearchSpace {
    /// The point a file names (`{"analysis.fast": 10, ...}`), if every
    /// parameter has a value of its domain's type there.
    pub fn point_from_json(&self, params: &serde_json::Map<String, serde_json::Value>) -> Option<Point> {
        self.parameters
            .iter()
            .map(|p| {
                let v = params.get(&p.name)?;
                match &p.domain {
                    Domain::List(values) | Domain::Range { values, .. } => {
                        values.iter().find(|c| serde_json::to_value(c).ok().as_ref() == Some(v)).cloned()
                    }
                    Domain::Uniform { integer: true, .. } => v.as_i64().map(ConfigValue::Int),
                    Domain::Uniform { .. } => v.as_f64().map(ConfigValue::Float),
                }
            })
            .collect()
    }
}

/// A value identifying a point (for spotting repeats).
pub fn point_key(point: &Point) -> String {
    point.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\u{1f}")
}

fn fixed_operand(name: &str, declared: &Declared) -> Result<f64, String> {
    let Some((kind, key)) = name.split_once('.') else {
        return Err(format!("`{name}` is not a parameter: write slice.setting, for example analysis.fast"));
    };
    let Some(kind) = SliceKind::from_name(kind) else {
        return Err(format!("`{name}`: `{kind}` is not a slice kind"));
    };
    let (label, params) = &declared.plugins[&kind];
    if !params.iter().any(|p| p.key == key) {
        let accepted: Vec<&str> = params.iter().map(|p| p.key.as_str()).collect();
        return Err(format!(
            "`{name}` is unknown: {label} has no setting `{key}` (it accepts: {})",
            if accepted.is_empty() { "none".to_owned() } else { accepted.join(", ") }
        ));
    }
    let value = declared.settings[&kind].iter().find(|(k, _)| k == key).map(|(_, v)| v);
    value.and_then(numeric).ok_or_else(|| format!("{name} is text, and constraints compare numbers"))
}

/// Reads what to try for a setting whose default is `default`.
fn domain(value: &toml::Value, default: &ConfigValue) -> Result<Domain, String> {
    let numeric_setting = matches!(default, ConfigValue::Int(_) | ConfigValue::Float(_));
    let integer = matches!(default, ConfigValue::Int(_));
    let number = |v: Option<&toml::Value>, what: &str| -> Result<f64, String> {
        match v {
            Some(toml::Value::Integer(i)) => Ok(*i as f64),
            Some(toml::Value::Float(f)) if !integer && f.is_finite() => Ok(*f),
            Some(toml::Value::Float(f)) if integer => {
                Err(format!("{what} must be a whole number (the setting is an integer), got {f}"))
            }
            Some(other) => Err(format!("{what} must be a number, got {other}")),
            None => Err(format!("{what} is missing")),
        }
    };
    match value {
        toml::Value::Array(items) => {
            if items.is_empty() {
                return Err("the list is empty: give at least one value".to_owned());
            }
            let mut values: Vec<ConfigValue> = Vec::with_capacity(items.len());
            for item in items {
                let v = setting_value(item, default)?;
                if values.contains(&v) {
                    return Err(format!("the list has {v} twice"));
                }
                values.push(v);
            }
            Ok(Domain::List(values))
        }
        toml::Value::Table(table) => {
            const SHAPES: &str = "a range is { from = 5, to = 50, step = 5 }; a distribution is \
                                  { uniform = [0.5, 1.0] } or { log-uniform = [1, 1000] }";
            if !numeric_setting {
                return Err(format!(
                    "ranges and distributions need a numeric setting, and this one is {} (default {default}): \
                     give a list",
                    default.type_name()
                ));
            }
            let keys: Vec<&str> = table.keys().map(String::as_str).collect();
            match keys.as_slice() {
                ["from", "step", "to"] => {
                    let from = number(table.get("from"), "from")?;
                    let to = number(table.get("to"), "to")?;
                    let step = number(table.get("step"), "step")?;
                    if step <= 0.0 {
                        return Err(format!("step must be positive, got {step}"));
                    }
                    if from > to {
                        return Err(format!("the range is empty: from ({from}) is greater than to ({to})"));
                    }
                    let count = ((to - from) / step + 1e-9).floor() as u64 + 1;
                    if count > 1_000_000 {
                        return Err(format!("the range has {count} values; at most 1,000,000"));
                    }
                    let decimals = decimals(from).max(decimals(step));
                    let values = (0..count)
                        .map(|i| {
                            let v = from + i as f64 * step;
                            if integer {
                                ConfigValue::Int(v.round() as i64)
                            } else {
                                // 0.1 + 2 x 0.1 is 0.30000000000000004: round to the digits written.
                                ConfigValue::Float(format!("{v:.decimals$}").parse().unwrap_or(v))
                            }
                        })
                        .collect();
                    Ok(Domain::Range { values, step })
                }
                [name @ ("uniform" | "log-uniform")] => {
                    let log = *name == "log-uniform";
                    let bounds = match table.get(*name) {
                        Some(toml::Value::Array(b)) if b.len() == 2 => b,
                        _ => return Err(format!("{name} takes two bounds: {{ {name} = [low, high] }}")),
                    };
                    let lo = number(bounds.first(), "the low bound")?;
                    let hi = number(bounds.get(1), "the high bound")?;
                    if lo >= hi {
                        return Err(format!("the low bound ({lo}) must be less than the high bound ({hi})"));
                    }
                    if log && lo <= 0.0 {
                        return Err(format!("log-uniform needs a positive low bound, got {lo}"));
                    }
                    Ok(Domain::Uniform { lo, hi, log, integer })
                }
                _ => Err(format!("unknown shape {{ {} }}: {SHAPES}", keys.join(", "))),
            }
        }
        other => Err(format!(
            "a single value ({other}) does not vary: put it in the slice's config, or give a list, a range or a distribution"
        )),
    }
}

/// Digits after the point in the shortest text of `v`.
fn decimals(v: f64) -> usize {
    let text = format!("{v}");
    text.split_once('.').map_or(0, |(_, frac)| frac.len()).min(12)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<ConfigParam> {
        let p = |key: &str, default| ConfigParam { key: key.into(), description: String::new(), default };
        vec![p("fast", ConfigValue::Int(10)), p("slow", ConfigValue::Int(30))]
    }

    fn space(toml_text: &str) -> Result<SearchSpace, Vec<String>> {
        let section: OptimizeSection = toml::from_str(toml_text).unwrap();
        let params = params();
        let fraction = [ConfigParam {
            key: "fraction".into(),
            description: String::new(),
            default: ConfigValue::Float(0.95),
        }];
        let mut settings = Settings::new();
        let mut plugins = BTreeMap::new();
        for kind in SliceKind::ALL {
            let declared: &[ConfigParam] = match kind {
                SliceKind::Analysis => &params,
                SliceKind::Sizing => &fraction,
                _ => &[],
            };
            plugins.insert(kind, (format!("{kind}-plugin 0.1.0"), declared));
            settings.insert(kind, declared.iter().map(|p| (p.key.clone(), p.default.clone())).collect());
        }
        SearchSpace::new(&section, &Declared { plugins, settings: &settings }, Some(toml_text))
    }

    #[test]
    fn grid_enumerates_in_order_and_skips_what_constraints_forbid() {
        let s = space(
            "constraints = [\"analysis.fast < analysis.slow\"]\n\
             [space.analysis]\nfast = { from = 10, to = 30, step = 10 }\nslow = [20, 30]\n",
        )
        .unwrap();
        let (points, skipped) = s.grid();
        let pairs: Vec<(i64, i64)> = points
            .iter()
            .map(|p| match (&p[0], &p[1]) {
                (ConfigValue::Int(a), ConfigValue::Int(b)) => (*a, *b),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(pairs, [(10, 20), (10, 30), (20, 30)]);
        // (20, 20), (30, 20) and (30, 30) break fast < slow.
        assert_eq!(skipped, 3);
    }

    #[test]
    fn float_ranges_keep_the_digits_written() {
        let s = space("[space.sizing]\nfraction = { from = 0.1, to = 0.5, step = 0.1 }\n").unwrap();
        let Domain::Range { values, .. } = &s.parameters[0].domain else { panic!() };
        let texts: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        assert_eq!(texts, ["0.1", "0.2", "0.3", "0.4", "0.5"]);
    }

    #[test]
    fn constraints_may_name_settings_that_do_not_vary() {
        // slow stays at its default, 30.
        let s = space(
            "constraints = [\"analysis.fast * 2 <= analysis.slow\"]\n[space.analysis]\nfast = [10, 15, 16]\n",
        )
        .unwrap();
        assert_eq!(s.grid().0.len(), 2);
    }

    #[test]
    fn every_problem_is_reported_with_its_key_and_line() {
        let text = "constraints = [\"analysis.fast < analysis.sloow\"]\n\
                    heatmap = [\"analysis.fast\", \"regime.window\"]\n\
                    [space.analysis]\n\
                    fsat = [1, 2]\n\
                    fast = { from = 50, to = 5, step = 5 }\n\
                    slow = []\n\
                    [space.sizing]\n\
                    fraction = { normal = [1, 2] }\n\
                    [space.strategi]\n\
                    x = [1]\n";
        let problems = space(text).unwrap_err();
        let want = [
            "optimize.space.strategi: `strategi` is not a slice kind",
            "optimize.space.analysis.fast (line 5): the range is empty: from (50) is greater than to (5)",
            "optimize.space.analysis.fsat (line 4): analysis-plugin 0.1.0 has no setting `fsat` (it accepts: fast, slow)",
            "optimize.space.analysis.slow (line 6): the list is empty",
            "optimize.space.sizing.fraction (line 8): unknown shape { normal }",
            "optimize.constraints (line 1): `analysis.fast < analysis.sloow`: `analysis.sloow` is unknown: \
             analysis-plugin 0.1.0 has no setting `sloow`",
            "optimize.heatmap (line 2): `regime.window` is not a parameter of optimize.space",
        ];
        assert_eq!(problems.len(), want.len(), "{problems:#?}");
        for (p, w) in problems.iter().zip(want) {
            assert!(p.starts_with(w), "{p}\n  does not start with\n{w}");
        }
    }

    #[test]
    fn values_must_have_the_settings_type() {
        let problems =
            space("[space.analysis]\nfast = [5, 7.5]\nslow = { uniform = [20.5, 40] }\n").unwrap_err();
        assert!(
            problems[0].contains("fast (line 2): must be an integer (default 10), got 7.5"),
            "{problems:?}"
        );
        assert!(problems[1].contains("the low bound must be a whole number"), "{problems:?}");
    }

    #[test]
    fn uniform_integers_stay_whole_and_in_bounds() {
        let s = space("[space.analysis]\nslow = { uniform = [20, 40] }\n").unwrap();
        let mut rng = Rng::new(1, 0);
        for _ in 0..200 {
            match s.sample(&mut rng)[0] {
                ConfigValue::Int(v) => assert!((20..=40).contains(&v)),
                ref other => panic!("{other:?}"),
            }
        }
    }
}
