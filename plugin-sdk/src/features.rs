//! Feature columns handed from the analysis slice to the regime and strategy slices.

use crate::{Error, Result};

/// The names of the feature columns, in column order, as the analysis slice
/// declared them. Look up the columns you need once, in `new`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureNames(Vec<String>);

impl FeatureNames {
    /// Column names in order.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        FeatureNames(names.into_iter().map(Into::into).collect())
    }

    /// The column of `name`, or an error listing the columns there are, so that
    /// a config pairing this slice with an analysis slice that lacks the feature
    /// fails at start-up with a message that says what to fix.
    pub fn index(&self, name: &str) -> Result<usize> {
        self.0.iter().position(|n| n == name).ok_or_else(|| {
            Error::new(format!(
                "needs feature `{name}`, which the analysis slice does not produce (it produces: {})",
                if self.0.is_empty() { "nothing".to_owned() } else { self.0.join(", ") }
            ))
        })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the analysis slice produces no features.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Names in column order.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

/// Feature values of a batch of bars: one row per bar, one column per feature,
/// NaN where the analysis slice has no value yet (warm-up).
#[derive(Debug, Clone, Copy)]
pub struct FeatureRows<'a> {
    values: &'a [f64],
    width: usize,
}

impl<'a> FeatureRows<'a> {
    /// Wraps row-major values with `width` columns.
    pub fn new(values: &'a [f64], width: usize) -> Self {
        debug_assert!(width == 0 || values.len().is_multiple_of(width));
        FeatureRows { values, width }
    }

    /// Value of column `col` on row (bar) `row`.
    #[inline]
    pub fn get(&self, row: usize, col: usize) -> f64 {
        self.values[row * self.width + col]
    }

    /// All columns of one row.
    pub fn row(&self, row: usize) -> &'a [f64] {
        &self.values[row * self.width..(row + 1) * self.width]
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.width
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_feature_lists_what_exists() {
        let names = FeatureNames::new(["rsi_14"]);
        let err = names.index("sma_fast").unwrap_err();
        assert_eq!(
            err.to_string(),
            "needs feature `sma_fast`, which the analysis slice does not produce (it produces: rsi_14)"
        );
    }

    #[test]
    fn rows_are_row_major() {
        let values = [1.0, 2.0, 3.0, 4.0];
        let rows = FeatureRows::new(&values, 2);
        assert_eq!(rows.get(1, 0), 3.0);
        assert_eq!(rows.row(0), &[1.0, 2.0]);
    }
}
