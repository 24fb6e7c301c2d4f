//! Measurement records: every run's value, and what is reported from them —
//! the median over runs, the spread, and the ratio to the workload's
//! reference contestant.

use serde_json::{Map, Value};

/// A workload's parameters, e.g. `{"batch": 256}`, in the order given.
pub type Params = Map<String, Value>;

/// Builds [`Params`] from `(name, value)` pairs.
pub fn params<const N: usize>(pairs: [(&str, Value); N]) -> Params {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

/// One value measured in one run.
#[derive(Clone, Debug)]
pub struct Sample {
    pub workload: &'static str,
    pub contestant: &'static str,
    pub params: Params,
    /// Says its unit: `ops_per_sec`, `p50_ns`, ...
    pub metric: &'static str,
    pub value: f64,
}

/// What is reported for one (workload, params, contestant, metric).
#[derive(Clone, Debug)]
pub struct Summary {
    pub workload: &'static str,
    pub contestant: &'static str,
    pub params: Params,
    pub metric: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
    /// `median / reference median` for the same workload, params and
    /// metric; `None` for the reference itself or when there is none.
    pub ratio: Option<f64>,
    /// The contestant the ratio is against.
    pub reference: Option<&'static str>,
}

/// Every sample of an invocation, and which contestant each workload is
/// compared against.
#[derive(Default)]
pub struct Results {
    samples: Vec<Sample>,
    references: Vec<(&'static str, &'static str)>,
}

impl Results {
    pub fn record(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    /// Makes `contestant` the one the other contestants of `workload` are
    /// compared with.
    pub fn compare_against(&mut self, workload: &'static str, contestant: &'static str) {
        self.references.retain(|&(w, _)| w != workload);
        self.references.push((workload, contestant));
    }

    fn reference(&self, workload: &str) -> Option<&'static str> {
        self.references
            .iter()
            .find(|&&(w, _)| w == workload)
            .map(|&(_, c)| c)
    }

    /// One summary per (workload, params, contestant, metric), in the order
    /// first measured, with each comparison's reference first.
    pub fn summaries(&self) -> Vec<Summary> {
        let mut groups: Vec<(Summary, Vec<f64>)> = Vec::new();
        for sample in &self.samples {
            let same = |s: &Summary| {
                s.workload == sample.workload
                    && s.contestant == sample.contestant
                    && s.metric == sample.metric
                    && s.params == sample.params
            };
            match groups.iter_mut().find(|(s, _)| same(s)) {
                Some((_, values)) => values.push(sample.value),
                None => groups.push((self.empty_summary(sample), vec![sample.value])),
            }
        }
        let mut summaries: Vec<Summary> = groups
            .into_iter()
            .map(|(mut summary, mut values)| {
                values.sort_by(f64::total_cmp);
                summary.median = median(&values);
                summary.min = values[0];
                summary.max = values[values.len() - 1];
                summary.runs = values.len();
                summary
            })
            .collect();
        let snapshot = summaries.clone();
        for summary in &mut summaries {
            summary.ratio = snapshot
                .iter()
                .find(|r| {
                    Some(r.contestant) == summary.reference
                        && r.contestant != summary.contestant
                        && r.workload == summary.workload
                        && r.metric == summary.metric
                        && r.params == summary.params
                })
                .map(|r| summary.median / r.median);
        }
        let comparison_of = |s: &Summary| {
            snapshot
                .iter()
                .position(|r| {
                    r.workload == s.workload && r.params == s.params && r.metric == s.metric
                })
                .unwrap_or(usize::MAX)
        };
        summaries.sort_by_key(|s| (comparison_of(s), Some(s.contestant) != s.reference));
        summaries
    }

    fn empty_summary(&self, sample: &Sample) -> Summary {
        Summary {
            workload: sample.workload,
            contestant: sample.contestant,
            params: sample.params.clone(),
            metric: sample.metric,
            median: 0.0,
            min: 0.0,
            max: 0.0,
            runs: 0,
            ratio: None,
            reference: self.reference(sample.workload),
        }
    }
}

/// The median of sorted, non-empty `values` (the mean of the middle two
/// for an even count).
fn median(values: &[f64]) -> f64 {
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(contestant: &'static str, batch: u32, value: f64) -> Sample {
        Sample {
            workload: "nop",
            contestant,
            params: params([("batch", json!(batch))]),
            metric: "ops_per_sec",
            value,
        }
    }

    #[test]
    fn medians_and_ratios_per_comparison() {
        let mut results = Results::default();
        results.compare_against("nop", "raw");
        for (ouro, raw) in [(9.0, 10.0), (1.0, 30.0), (8.0, 20.0)] {
            results.record(sample("ouro", 1, ouro));
            results.record(sample("raw", 1, raw));
            results.record(sample("raw", 32, raw * 2.0));
            results.record(sample("ouro", 32, ouro * 4.0));
        }
        let summaries = results.summaries();
        let got: Vec<_> = summaries
            .iter()
            .map(|s| (s.contestant, s.params["batch"].as_u64(), s.median, s.ratio))
            .collect();
        assert_eq!(
            got,
            vec![
                ("raw", Some(1), 20.0, None),
                ("ouro", Some(1), 8.0, Some(0.4)),
                ("raw", Some(32), 40.0, None),
                ("ouro", Some(32), 32.0, Some(0.8)),
            ]
        );
        assert_eq!(
            (summaries[1].min, summaries[1].max, summaries[1].runs),
            (1.0, 9.0, 3)
        );
    }

    #[test]
    fn even_counts_average_the_middle_two() {
        assert_eq!(median(&[1.0, 2.0, 4.0, 10.0]), 3.0);
        assert_eq!(median(&[5.0]), 5.0);
    }

    #[test]
    fn without_a_reference_there_is_no_ratio() {
        let mut results = Results::default();
        results.record(sample("ouro", 1, 3.0));
        results.record(sample("raw", 1, 6.0));
        assert!(results.summaries().iter().all(|s| s.ratio.is_none()));
    }
}
