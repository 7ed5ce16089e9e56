//! A slice's configuration: what it declares it accepts, and what it was given.

use std::collections::BTreeMap;

use crate::{ConfigValue, Error, Result};

/// What a slice says about itself besides its name and version (which the
/// export macro takes from `Cargo.toml`): one line of description and the
/// configuration keys it accepts, with defaults.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// One line on what the slice does, shown by `host plugin inspect`.
    pub description: String,
    /// Every configuration key the slice accepts.
    pub params: Vec<Param>,
}

impl Manifest {
    /// A manifest with a description and no parameters yet.
    pub fn new(description: impl Into<String>) -> Self {
        Manifest { description: description.into(), params: Vec::new() }
    }

    /// Adds a parameter.
    pub fn param(mut self, param: Param) -> Self {
        self.params.push(param);
        self
    }
}

/// One configuration key a slice accepts. The default's type is the key's type:
/// the host refuses a config that gives an integer key a string, for example.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The key as written in the config file (`fast`, `fee-bps`).
    pub key: String,
    /// Used when the config does not set the key.
    pub default: ConfigValue,
    /// One line for people reading `host plugin inspect`.
    pub description: String,
}

impl Param {
    fn new(key: &str, default: ConfigValue, description: &str) -> Self {
        Param { key: key.to_owned(), default, description: description.to_owned() }
    }
    /// An integer key.
    pub fn int(key: &str, default: i64, description: &str) -> Self {
        Self::new(key, ConfigValue::Integer(default), description)
    }
    /// A floating-point key (integers in the config are accepted too).
    pub fn float(key: &str, default: f64, description: &str) -> Self {
        Self::new(key, ConfigValue::Float(default), description)
    }
    /// A boolean key.
    pub fn bool(key: &str, default: bool, description: &str) -> Self {
        Self::new(key, ConfigValue::Boolean(default), description)
    }
    /// A string key.
    pub fn text(key: &str, default: &str, description: &str) -> Self {
        Self::new(key, ConfigValue::Text(default.to_owned()), description)
    }
}

/// The configuration a slice was started with: every declared key, with the
/// run's value or the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    values: BTreeMap<String, ConfigValue>,
}

impl Config {
    /// Every declared key at its default value.
    pub fn from_params(params: &[Param]) -> Self {
        let values = params.iter().map(|p| (p.key.clone(), p.default.clone())).collect();
        Config { values }
    }

    /// The defaults a manifest declares: `Config::defaults(&MyStrategy::manifest())` in tests.
    pub fn defaults(manifest: &Manifest) -> Self {
        Self::from_params(&manifest.params)
    }

    /// Sets a key, as the run's config file would. For tests and for the host adapter.
    pub fn with(mut self, key: &str, value: impl Into<ConfigValue>) -> Self {
        self.values.insert(key.to_owned(), value.into());
        self
    }

    /// Applies the given entries over the defaults, refusing keys the slice did not declare.
    pub(crate) fn merge(mut self, entries: impl IntoIterator<Item = (String, ConfigValue)>) -> Result<Self> {
        for (key, value) in entries {
            if !self.values.contains_key(&key) {
                let known: Vec<&str> = self.values.keys().map(String::as_str).collect();
                return Err(Error::new(format!(
                    "unknown config key `{key}` (accepted: {})",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                )));
            }
            self.values.insert(key, value);
        }
        Ok(self)
    }

    fn value(&self, key: &str) -> Result<&ConfigValue> {
        self.values
            .get(key)
            .ok_or_else(|| Error::new(format!("config key `{key}` is not declared in the manifest")))
    }

    /// An integer setting.
    pub fn int(&self, key: &str) -> Result<i64> {
        match self.value(key)? {
            ConfigValue::Integer(v) => Ok(*v),
            other => Err(type_error(key, "an integer", other)),
        }
    }

    /// A positive integer setting, as a count or period.
    pub fn count(&self, key: &str) -> Result<usize> {
        let v = self.int(key)?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::new(format!("`{key}` must be a positive integer, got {v}")))
    }

    /// A floating-point setting; integers are accepted.
    pub fn float(&self, key: &str) -> Result<f64> {
        match self.value(key)? {
            ConfigValue::Float(v) => Ok(*v),
            ConfigValue::Integer(v) => Ok(*v as f64),
            other => Err(type_error(key, "a number", other)),
        }
    }

    /// A boolean setting.
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.value(key)? {
            ConfigValue::Boolean(v) => Ok(*v),
            other => Err(type_error(key, "true or false", other)),
        }
    }

    /// A string setting.
    pub fn text(&self, key: &str) -> Result<&str> {
        match self.value(key)? {
            ConfigValue::Text(v) => Ok(v),
            other => Err(type_error(key, "a string", other)),
        }
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ConfigValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

fn type_error(key: &str, expected: &str, got: &ConfigValue) -> Error {
    Error::new(format!("`{key}` must be {expected}, got {}", describe_value(got)))
}

fn describe_value(value: &ConfigValue) -> String {
    match value {
        ConfigValue::Boolean(b) => format!("the boolean {b}"),
        ConfigValue::Integer(i) => format!("the integer {i}"),
        ConfigValue::Float(f) => format!("the number {f}"),
        ConfigValue::Text(s) => format!("the string {s:?}"),
    }
}

impl From<i64> for ConfigValue {
    fn from(v: i64) -> Self {
        ConfigValue::Integer(v)
    }
}
impl From<i32> for ConfigValue {
    fn from(v: i32) -> Self {
        ConfigValue::Integer(v.into())
    }
}
impl From<f64> for ConfigValue {
    fn from(v: f64) -> Self {
        ConfigValue::Float(v)
    }
}
impl From<bool> for ConfigValue {
    fn from(v: bool) -> Self {
        ConfigValue::Boolean(v)
    }
}
impl From<&str> for ConfigValue {
    fn from(v: &str) -> Self {
        ConfigValue::Text(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<Param> {
        vec![Param::int("fast", 10, "fast period"), Param::float("fee-bps", 10.0, "fee")]
    }

    #[test]
    fn defaults_fill_missing_keys_and_given_values_win() {
        let config =
            Config::from_params(&params()).merge([("fast".to_owned(), ConfigValue::Integer(5))]).unwrap();
        assert_eq!(config.int("fast").unwrap(), 5);
        assert_eq!(config.float("fee-bps").unwrap(), 10.0);
    }

    #[test]
    fn unknown_key_is_refused_with_the_accepted_list() {
        let err =
            Config::from_params(&params()).merge([("fsat".to_owned(), ConfigValue::Integer(5))]).unwrap_err();
        assert_eq!(err.to_string(), "unknown config key `fsat` (accepted: fast, fee-bps)");
    }

    #[test]
    fn wrong_type_names_key_and_value() {
        let config = Config::from_params(&params()).with("fast", "ten");
        let err = config.int("fast").unwrap_err();
        assert_eq!(err.to_string(), "`fast` must be an integer, got the string \"ten\"");
    }

    #[test]
    fn count_refuses_zero() {
        let config = Config::from_params(&params()).with("fast", 0);
        assert!(config.count("fast").unwrap_err().to_string().contains("positive"));
    }

    #[test]
    fn float_accepts_integers() {
        let config = Config::from_params(&params()).with("fee-bps", 3);
        assert_eq!(config.float("fee-bps").unwrap(), 3.0);
    }
}
