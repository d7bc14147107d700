//! A seeded generator of card transactions with realistic fraud patterns, and
//! the knobs that drift them.
//!
//! Customers have a home, a typical spend and an account age. Legitimate
//! spending follows their habits: daytime hours, everyday merchants, near home,
//! a known device, card present in shops. Classic fraud (stolen card details,
//! account takeover) leans the other way: card not present, online and
//! resellable goods, amounts far above the customer's usual, new devices, bursts
//! of transactions, night hours, foreign merchants. Each fraudulent transaction
//! shows only some of these signs, so classes overlap as they do in real data.
//!
//! Drift knobs: `amount_scale` and `new_category_share` move the inputs
//! (covariate drift); `fraud_shift` moves fraud to a new pattern (cloned cards
//! used in person for small everyday purchases near home), which a model
//! trained on classic fraud misses (concept drift).

use rand::distr::{Distribution, weighted::WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{LogNormal, Poisson};
use serde::{Deserialize, Serialize};

use super::schema::{MERCHANT_CATEGORIES, NEW_MERCHANT_CATEGORY};
use super::transaction::Transaction;
use crate::error::{Error, Result};

/// 2026-01-01T00:00:00Z.
pub const DEFAULT_START: i64 = 1_767_225_600;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorConfig {
    pub rows: usize,
    pub seed: u64,
    /// Share of fraudulent transactions.
    pub fraud_rate: f64,
    /// First second of the period (Unix time).
    pub start: i64,
    /// Length of the period in days.
    pub days: u32,
    pub drift: Drift,
}

/// Drift of the generated data against the default (training) distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Multiplies every amount (1.0: none). Covariate drift.
    pub amount_scale: f64,
    /// Share of transactions at a merchant category the model never saw.
    /// Covariate drift.
    pub new_category_share: f64,
    /// Share of fraud that follows the new pattern. Concept drift.
    pub fraud_shift: f64,
}

impl Default for Drift {
    fn default() -> Self {
        Self {
            amount_scale: 1.0,
            new_category_share: 0.0,
            fraud_shift: 0.0,
        }
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            rows: 100_000,
            seed: 42,
            fraud_rate: 0.01,
            start: DEFAULT_START,
            days: 30,
            drift: Drift::default(),
        }
    }
}

impl GeneratorConfig {
    pub fn validate(&self) -> Result<()> {
        let share = |field: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(
                    field,
                    format!("must be between 0 and 1, got {v}"),
                ))
            }
        };
        if self.rows == 0 {
            return Err(Error::invalid("rows", "must be at least 1"));
        }
        if !(self.fraud_rate > 0.0 && self.fraud_rate < 1.0) {
            return Err(Error::invalid(
                "fraud_rate",
                format!(
                    "must be between 0 and 1 (exclusive), got {}",
                    self.fraud_rate
                ),
            ));
        }
        if self.days == 0 {
            return Err(Error::invalid("days", "must be at least 1"));
        }
        if !(self.drift.amount_scale.is_finite() && self.drift.amount_scale > 0.0) {
            return Err(Error::invalid(
                "amount_scale",
                format!("must be a positive number, got {}", self.drift.amount_scale),
            ));
        }
        share("new_category_share", self.drift.new_category_share)?;
        share("fraud_shift", self.drift.fraud_shift)
    }
}

struct Customer {
    home_spend: f64,
    account_age_days: f64,
    device_age_days: f64,
}

/// Everyday spending share of each category (same order as
/// [`MERCHANT_CATEGORIES`]) and its amount factor.
const LEGIT_CATEGORY_WEIGHTS: [f64; 10] = [22.0, 18.0, 12.0, 8.0, 10.0, 15.0, 4.0, 4.0, 1.0, 2.0];
const CLASSIC_FRAUD_CATEGORY_WEIGHTS: [f64; 10] =
    [3.0, 2.0, 3.0, 1.0, 3.0, 30.0, 25.0, 8.0, 10.0, 15.0];
const SHIFTED_FRAUD_CATEGORY_WEIGHTS: [f64; 10] =
    [35.0, 20.0, 25.0, 10.0, 5.0, 2.0, 1.0, 0.0, 0.0, 2.0];
const CATEGORY_AMOUNT_FACTOR: [f64; 11] = [1.0, 0.7, 0.8, 0.6, 1.1, 1.3, 3.0, 4.0, 5.0, 1.5, 2.0];
/// Categories where the card is never present.
const CARD_NOT_PRESENT: [bool; 11] = [
    false, false, false, false, false, true, false, false, false, true, true,
];

/// Hour-of-day weights: people shop by day; classic fraud runs round the clock
/// with a bump at night.
const LEGIT_HOURS: [f64; 24] = [
    0.6, 0.3, 0.2, 0.2, 0.3, 0.6, 1.5, 3.0, 4.5, 5.5, 6.0, 6.5, 7.5, 7.0, 6.5, 6.5, 7.0, 7.5, 7.5,
    6.5, 5.0, 3.5, 2.0, 1.2,
];
const CLASSIC_FRAUD_HOURS: [f64; 24] = [
    5.0, 6.0, 6.5, 6.5, 5.5, 4.0, 3.0, 3.0, 3.5, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0,
    4.0, 4.0, 4.0, 4.5, 5.0,
];

struct Distributions {
    legit_category: WeightedIndex<f64>,
    classic_category: WeightedIndex<f64>,
    shifted_category: WeightedIndex<f64>,
    legit_hour: WeightedIndex<f64>,
    classic_hour: WeightedIndex<f64>,
    spend_noise: LogNormal<f64>,
    habit_noise: LogNormal<f64>,
    big_spend: LogNormal<f64>,
    small_spend: LogNormal<f64>,
    near: LogNormal<f64>,
    far: LogNormal<f64>,
    fraud_far: LogNormal<f64>,
    device_age: LogNormal<f64>,
    legit_burst: Poisson<f64>,
    fraud_burst: Poisson<f64>,
    shifted_burst: Poisson<f64>,
}

impl Distributions {
    fn new() -> Self {
        let weighted = |w: &[f64]| WeightedIndex::new(w).expect("constant weights are valid");
        let lognormal = |median: f64, sigma: f64| {
            LogNormal::new(median.ln(), sigma).expect("constant parameters are valid")
        };
        let poisson = |mean: f64| Poisson::new(mean).expect("constant mean is valid");
        Self {
            legit_category: weighted(&LEGIT_CATEGORY_WEIGHTS),
            classic_category: weighted(&CLASSIC_FRAUD_CATEGORY_WEIGHTS),
            shifted_category: weighted(&SHIFTED_FRAUD_CATEGORY_WEIGHTS),
            legit_hour: weighted(&LEGIT_HOURS),
            classic_hour: weighted(&CLASSIC_FRAUD_HOURS),
            spend_noise: lognormal(1.0, 0.6),
            habit_noise: lognormal(1.0, 0.15),
            big_spend: lognormal(3.5, 0.7),
            small_spend: lognormal(0.35, 0.5),
            near: lognormal(4.0, 0.9),
            far: lognormal(400.0, 1.0),
            fraud_far: lognormal(60.0, 1.6),
            device_age: lognormal(300.0, 1.0),
            legit_burst: poisson(0.4),
            fraud_burst: poisson(2.5),
            shifted_burst: poisson(1.2),
        }
    }
}

/// Which kind of transaction to draw.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Legit,
    ClassicFraud,
    ShiftedFraud,
}

/// Generates `config.rows` transactions, ordered by time; the same config
/// always gives the same rows.
pub fn generate(config: &GeneratorConfig) -> Result<Vec<Transaction>> {
    config.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let d = Distributions::new();
    let customers = customers(&mut rng, (config.rows / 40).clamp(50, 200_000), &d);
    let mut rows: Vec<Transaction> = (0..config.rows)
        .map(|_| {
            let kind = if rng.random_bool(config.fraud_rate) {
                if rng.random_bool(config.drift.fraud_shift) {
                    Kind::ShiftedFraud
                } else {
                    Kind::ClassicFraud
                }
            } else {
                Kind::Legit
            };
            let who = rng.random_range(0..customers.len());
            transaction(&mut rng, config, &d, who, &customers[who], kind)
        })
        .collect();
    rows.sort_by_key(|t| t.timestamp);
    for (i, t) in rows.iter_mut().enumerate() {
        t.transaction_id = i as u64 + 1;
    }
    Ok(rows)
}

fn customers(rng: &mut ChaCha8Rng, n: usize, d: &Distributions) -> Vec<Customer> {
    let spend = LogNormal::new(45f64.ln(), 0.6).expect("constant parameters are valid");
    (0..n)
        .map(|_| Customer {
            home_spend: spend.sample(rng),
            account_age_days: rng.random_range(30.0..3650.0),
            device_age_days: d.device_age.sample(rng).min(3650.0),
        })
        .collect()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn transaction(
    rng: &mut ChaCha8Rng,
    config: &GeneratorConfig,
    d: &Distributions,
    who: usize,
    customer: &Customer,
    kind: Kind,
) -> Transaction {
    // How many of the fraud signs this transaction shows: from a few to all.
    let sign_rate = 0.3 + 0.65 * rng.random::<f64>();
    let sign = |rng: &mut ChaCha8Rng| kind == Kind::ClassicFraud && rng.random_bool(sign_rate);

    let category = if rng.random_bool(config.drift.new_category_share) {
        MERCHANT_CATEGORIES.len()
    } else {
        match kind {
            Kind::ClassicFraud if sign(rng) => d.classic_category.sample(rng),
            Kind::ShiftedFraud => d.shifted_category.sample(rng),
            _ => d.legit_category.sample(rng),
        }
    };
    let category_name = MERCHANT_CATEGORIES
        .get(category)
        .copied()
        .unwrap_or(NEW_MERCHANT_CATEGORY);

    let hour = match kind {
        Kind::ClassicFraud if sign(rng) => d.classic_hour.sample(rng),
        _ => d.legit_hour.sample(rng),
    };
    let day = rng.random_range(0..i64::from(config.days));
    let timestamp = config.start + day * 86_400 + hour as i64 * 3_600 + rng.random_range(0..3_600);

    let avg_amount_30d = customer.home_spend * d.habit_noise.sample(rng);
    let spend_factor = match kind {
        Kind::ClassicFraud if sign(rng) => d.big_spend.sample(rng),
        Kind::ShiftedFraud => d.small_spend.sample(rng),
        _ => d.spend_noise.sample(rng),
    };
    let amount = (customer.home_spend * CATEGORY_AMOUNT_FACTOR[category] * spend_factor)
        .clamp(0.5, 25_000.0)
        * config.drift.amount_scale;

    let card_present = if CARD_NOT_PRESENT[category] {
        false
    } else {
        match kind {
            Kind::ClassicFraud if sign(rng) => rng.random_bool(0.1),
            Kind::ShiftedFraud => true,
            _ => rng.random_bool(0.9),
        }
    };
    let travelling = rng.random_bool(0.03);
    let distance = match kind {
        Kind::ClassicFraud if sign(rng) => d.fraud_far.sample(rng),
        _ if travelling => d.far.sample(rng),
        _ => d.near.sample(rng),
    };
    let country_mismatch = match kind {
        Kind::ClassicFraud if sign(rng) => rng.random_bool(0.45),
        Kind::ShiftedFraud => false,
        _ if travelling => rng.random_bool(0.4),
        _ => rng.random_bool(0.01),
    };
    let device_age_days = match kind {
        Kind::ClassicFraud if sign(rng) => rng.random_range(0.0..3.0),
        // Five percent of honest customers have just changed phones.
        Kind::Legit if rng.random_bool(0.05) => rng.random_range(0.0..3.0),
        _ => customer.device_age_days,
    };
    let burst: f64 = match kind {
        Kind::ClassicFraud if sign(rng) => d.fraud_burst.sample(rng),
        Kind::ShiftedFraud => d.shifted_burst.sample(rng),
        _ => d.legit_burst.sample(rng),
    };
    let account_age_days = match kind {
        // Synthetic identities: accounts opened to commit fraud.
        Kind::ClassicFraud if sign(rng) && rng.random_bool(0.25) => rng.random_range(1.0..60.0),
        _ => customer.account_age_days,
    };

    Transaction {
        transaction_id: 0,
        timestamp,
        customer_id: who as u32 + 1,
        amount: round2(amount),
        merchant_category: category_name.to_owned(),
        hour: hour as u8,
        distance_from_home_km: round2(distance),
        card_present: u8::from(card_present),
        device_age_days: round2(device_age_days),
        velocity_1h: 1 + burst as u32,
        country_mismatch: u8::from(country_mismatch),
        account_age_days: account_age_days.round(),
        avg_amount_30d: round2(avg_amount_30d),
        is_fraud: u8::from(kind != Kind::Legit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rows: usize) -> GeneratorConfig {
        GeneratorConfig {
            rows,
            ..GeneratorConfig::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        let a = generate(&config(2_000)).unwrap();
        let b = generate(&config(2_000)).unwrap();
        assert_eq!(a, b);
        let c = generate(&GeneratorConfig {
            seed: 43,
            ..config(2_000)
        })
        .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn rows_are_in_time_order_with_about_one_percent_fraud() {
        let rows = generate(&config(50_000)).unwrap();
        assert!(rows.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert_eq!(rows[0].transaction_id, 1);
        let fraud = rows.iter().filter(|t| t.fraud()).count() as f64 / rows.len() as f64;
        // 500 expected; 4 standard deviations either side.
        assert!((0.0081..0.0119).contains(&fraud), "{fraud}");
        let end = DEFAULT_START + 30 * 86_400;
        assert!(
            rows.iter()
                .all(|t| (DEFAULT_START..end).contains(&t.timestamp))
        );
        assert!(
            rows.iter()
                .all(|t| i64::from(t.hour) == (t.timestamp % 86_400) / 3_600)
        );
    }

    #[test]
    fn fraud_looks_different_from_honest_spending() {
        let rows = generate(&config(100_000)).unwrap();
        let share = |fraud: bool, f: &dyn Fn(&Transaction) -> bool| {
            let class: Vec<_> = rows.iter().filter(|t| t.fraud() == fraud).collect();
            class.iter().filter(|t| f(t)).count() as f64 / class.len() as f64
        };
        let not_present = |t: &Transaction| t.card_present == 0;
        assert!(share(true, &not_present) > 2.0 * share(false, &not_present));
        let new_device = |t: &Transaction| t.device_age_days < 3.0;
        assert!(share(true, &new_device) > 4.0 * share(false, &new_device));
        let night = |t: &Transaction| t.hour < 6;
        assert!(share(true, &night) > 2.0 * share(false, &night));
    }

    #[test]
    fn drift_knobs_move_the_data() {
        let base = generate(&config(20_000)).unwrap();
        let drifted = generate(&GeneratorConfig {
            drift: Drift {
                amount_scale: 1.5,
                new_category_share: 0.1,
                fraud_shift: 1.0,
            },
            ..config(20_000)
        })
        .unwrap();
        let mean =
            |rows: &[Transaction]| rows.iter().map(|t| t.amount).sum::<f64>() / rows.len() as f64;
        assert!(mean(&drifted) > 1.3 * mean(&base));
        let new = drifted
            .iter()
            .filter(|t| t.merchant_category == NEW_MERCHANT_CATEGORY)
            .count() as f64
            / drifted.len() as f64;
        assert!((0.09..0.11).contains(&new), "{new}");
        assert!(
            !base
                .iter()
                .any(|t| t.merchant_category == NEW_MERCHANT_CATEGORY)
        );
        // Shifted fraud is used in person, near home.
        let fraud: Vec<_> = drifted.iter().filter(|t| t.fraud()).collect();
        let present = fraud.iter().filter(|t| t.card_present == 1).count() as f64;
        assert!(present / fraud.len() as f64 > 0.8);
    }

    #[test]
    fn bad_knobs_are_refused_by_name() {
        let err = generate(&GeneratorConfig {
            fraud_rate: 1.5,
            ..config(10)
        })
        .unwrap_err();
        assert!(err.to_string().contains("fraud_rate"), "{err}");
        let err = generate(&GeneratorConfig {
            drift: Drift {
                new_category_share: -0.1,
                ..Drift::default()
            },
            ..config(10)
        })
        .unwrap_err();
        assert!(err.to_string().contains("new_category_share"), "{err}");
    }
}
