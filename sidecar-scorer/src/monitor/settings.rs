//! How the model monitor judges: its windows, thresholds, hysteresis and the
//! performance checks. The `[monitor]` table of the scorer's TOML file; every key
//! has a default.

use serde::{Deserialize, Serialize};

outrider_protocol::closed_set! {
    /// What a window's width and slide count.
    pub enum WindowBy {
        /// Seconds of the samples' time (the filters' clocks).
        Time => "time",
        /// Samples, in the order the scorer stored them.
        Count => "count",
    }
}

/// Windows of a version's samples: tumbling when `slide` equals `width` (or is left
/// out), sliding otherwise (`width` a multiple of `slide`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub by: WindowBy,
    /// Seconds (by time) or samples (by count).
    pub width: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<u64>,
}

impl WindowSpec {
    pub fn slide(&self) -> u64 {
        self.slide.unwrap_or(self.width)
    }

    /// Width and slide in the unit windows are keyed by: ms (time) or samples.
    pub fn width_key(&self) -> u64 {
        match self.by {
            WindowBy::Time => self.width * 1000,
            WindowBy::Count => self.width,
        }
    }

    pub fn slide_key(&self) -> u64 {
        match self.by {
            WindowBy::Time => self.slide() * 1000,
            WindowBy::Count => self.slide(),
        }
    }

    /// The end of the first window (by time) that holds a sample at `at_ms`: the
    /// slide boundary after it. Windows end on multiples of the slide.
    pub fn first_end_holding(&self, at_ms: u64) -> u64 {
        let slide = self.slide_key();
        at_ms - at_ms % slide + slide
    }

    /// The window ending at `end`: [end − width, end).
    pub fn span_ending(&self, end: u64) -> (u64, u64) {
        (end.saturating_sub(self.width_key()), end)
    }
}

/// A feature (or the score) drifts in a window when any statistic with a threshold
/// reaches it. PSI and the Jensen-Shannon distance are computed on the reference's
/// bins (numeric) or categories (categorical); both are effect sizes, and both grow
/// with sampling noise in small windows (about (bins − 1)/n for PSI), which
/// `min_samples` keeps well below the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftLimits {
    pub psi: Option<f64>,
    pub js_distance: Option<f64>,
}

impl Default for DriftLimits {
    fn default() -> Self {
        Self {
            psi: Some(0.2),
            js_distance: Some(0.2),
        }
    }
}

/// A finding alerts once its window verdict held in `drifted` of the last `windows`
/// judged windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hysteresis {
    pub drifted: usize,
    pub windows: usize,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self {
            drifted: 3,
            windows: 5,
        }
    }
}

/// When precision or recall counts as dropped: below the reference's figure by more
/// than `max_drop`, and beyond its uncertainty (the estimate's band, or the realised
/// figure's Wilson interval, lies below the reference).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceLimits {
    pub max_drop: f64,
    /// Realised performance is judged on the samples of this many last seconds that
    /// have a label.
    pub labelled_window_seconds: u64,
    /// ... once they hold this many positives.
    pub min_positives: u64,
    /// Feedback is joined to samples once it is this old, so the telemetry carrying
    /// its sample has arrived.
    pub label_delay_seconds: u64,
}

impl Default for PerformanceLimits {
    fn default() -> Self {
        Self {
            max_drop: 0.1,
            labelled_window_seconds: 3_600,
            min_positives: 20,
            label_delay_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSettings {
    pub window: WindowSpec,
    /// Samples a window needs to be judged.
    pub min_samples: u64,
    pub drift: DriftLimits,
    /// The dataset drifts when at least this share of the input features drifts.
    pub dataset_share: f64,
    /// A feature is missing in a window when more than this share of its samples lack
    /// it (absent, null or not a number: the filter leaves such values out).
    pub missing_share: f64,
    pub hysteresis: Hysteresis,
    pub performance: PerformanceLimits,
    /// Features whose drift is shown but never judged: seasonal ones such as the hour
    /// of the day, which a window of minutes never spreads like a reference of whole
    /// days. Their missing values still count.
    pub exclude: Vec<String>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            window: WindowSpec {
                by: WindowBy::Time,
                width: 60,
                slide: None,
            },
            min_samples: 200,
            drift: DriftLimits::default(),
            dataset_share: 0.5,
            missing_share: 0.1,
            hysteresis: Hysteresis::default(),
            performance: PerformanceLimits::default(),
            exclude: Vec::new(),
        }
    }
}

impl MonitorSettings {
    /// Checks the settings; the error names the key (under `monitor.`) and the problem.
    pub fn validate(&self) -> Result<(), String> {
        let w = &self.window;
        if w.width == 0 {
            return Err("monitor.window.width must be at least 1".into());
        }
        let slide = w.slide();
        if slide == 0 || slide > w.width || !w.width.is_multiple_of(slide) {
            return Err(format!(
                "monitor.window.slide must divide monitor.window.width ({}), got {slide}",
                w.width
            ));
        }
        if w.width / slide > 1_000 {
            return Err("monitor.window: at most 1000 slides per window".into());
        }
        if self.min_samples == 0 {
            return Err("monitor.min_samples must be at least 1".into());
        }
        for (key, v) in [
            ("monitor.drift.psi", self.drift.psi),
            ("monitor.drift.js_distance", self.drift.js_distance),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(format!("{key} must be a positive number"));
            }
        }
        if self.drift.psi.is_none() && self.drift.js_distance.is_none() {
            return Err("monitor.drift needs psi or js_distance".into());
        }
        for (key, v) in [
            ("monitor.dataset_share", self.dataset_share),
            ("monitor.missing_share", self.missing_share),
            ("monitor.performance.max_drop", self.performance.max_drop),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(format!("{key} must be between 0 and 1, got {v}"));
            }
        }
        let h = &self.hysteresis;
        if h.drifted == 0 || h.windows == 0 || h.drifted > h.windows || h.windows > 100 {
            return Err(format!(
                "monitor.hysteresis: drifted ({}) must be between 1 and windows ({}), windows at most 100",
                h.drifted, h.windows
            ));
        }
        if self.performance.labelled_window_seconds == 0 {
            return Err("monitor.performance.labelled_window_seconds must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_and_sliding_windows_by_time() {
        let tumbling = WindowSpec {
            by: WindowBy::Time,
            width: 60,
            slide: None,
        };
        assert_eq!(tumbling.first_end_holding(61_000), 120_000);
        assert_eq!(
            tumbling.first_end_holding(120_000),
            180_000,
            "an end is not in its window"
        );
        assert_eq!(tumbling.span_ending(120_000), (60_000, 120_000));
        // 60 s windows every 20 s: a sample is in three of them, the first ending at
        // the next boundary.
        let sliding = WindowSpec {
            slide: Some(20),
            ..tumbling
        };
        assert_eq!(sliding.first_end_holding(61_000), 80_000);
        assert_eq!(sliding.span_ending(80_000), (20_000, 80_000));
        assert_eq!(
            sliding.span_ending(140_000),
            (80_000, 140_000),
            "the last one holding it ends at 120 s"
        );
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        MonitorSettings::default().validate().unwrap();
        let parsed: MonitorSettings = toml::from_str(
            "min_samples = 50\n[window]\nby = \"count\"\nwidth = 500\nslide = 100\n[hysteresis]\ndrifted = 2\nwindows = 3\n",
        )
        .unwrap();
        parsed.validate().unwrap();
        assert_eq!(
            (parsed.window.width_key(), parsed.window.slide_key()),
            (500, 100)
        );
        let mut bad = parsed.clone();
        bad.window.slide = Some(300);
        assert!(bad.validate().unwrap_err().contains("monitor.window.slide"));
        let mut bad = parsed.clone();
        bad.hysteresis.drifted = 4;
        assert!(bad.validate().unwrap_err().contains("monitor.hysteresis"));
        let mut bad = parsed;
        bad.missing_share = 1.5;
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("monitor.missing_share")
        );
        assert!(toml::from_str::<MonitorSettings>("[window]\nby = \"rows\"\nwidth = 1\n").is_err());
    }
}
