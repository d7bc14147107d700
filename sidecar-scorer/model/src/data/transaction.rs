//! One card transaction, as generated, written and read.

use serde::{Deserialize, Serialize};

use super::schema::{N_FEATURES, col, merchant_code};

/// A card transaction with its label. Field names are the CSV columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub transaction_id: u64,
    /// Seconds since the Unix epoch (UTC).
    pub timestamp: i64,
    pub customer_id: u32,
    pub amount: f64,
    pub merchant_category: String,
    /// Hour of the day, 0-23.
    pub hour: u8,
    pub distance_from_home_km: f64,
    pub card_present: u8,
    /// Days since the device (or card) was first seen on the account.
    pub device_age_days: f64,
    /// Transactions of the customer in the last hour, this one included.
    pub velocity_1h: u32,
    pub country_mismatch: u8,
    pub account_age_days: f64,
    /// The customer's mean amount over the last 30 days.
    pub avg_amount_30d: f64,
    pub is_fraud: u8,
}

impl Transaction {
    /// The model's input row (see [`super::schema::FEATURES`]); an unknown
    /// merchant category gets code -1, which the model treats as unseen.
    pub fn features(&self) -> [f32; N_FEATURES] {
        let mut row = [0f32; N_FEATURES];
        row[col::AMOUNT] = self.amount as f32;
        row[col::MERCHANT_CATEGORY] =
            merchant_code(&self.merchant_category).map_or(-1.0, |c| c as f32);
        row[col::HOUR] = f32::from(self.hour);
        row[col::DISTANCE] = self.distance_from_home_km as f32;
        row[col::CARD_PRESENT] = f32::from(self.card_present);
        row[col::DEVICE_AGE] = self.device_age_days as f32;
        row[col::VELOCITY] = self.velocity_1h as f32;
        row[col::COUNTRY_MISMATCH] = f32::from(self.country_mismatch);
        row[col::ACCOUNT_AGE] = self.account_age_days as f32;
        row[col::AVG_AMOUNT] = self.avg_amount_30d as f32;
        row
    }

    /// A transaction rebuilt from a model input row, as the filter samples it (the
    /// merchant category by its code), with its outcome label. Fields the model does
    /// not read are left at zero.
    pub fn from_features(id: u64, timestamp: i64, row: &[f64; N_FEATURES], fraud: bool) -> Self {
        let categories = super::schema::all_merchant_categories();
        let code = row[col::MERCHANT_CATEGORY];
        let category = (code >= 0.0 && code.fract() == 0.0)
            .then(|| categories.get(code as usize))
            .flatten()
            .map_or("unknown", |c| *c);
        // Counts and flags are whole numbers in the input; a sampled row is rounded.
        let small = |v: f64| v.round().clamp(0.0, f64::from(u8::MAX)) as u8;
        Transaction {
            transaction_id: id,
            timestamp,
            customer_id: 0,
            amount: row[col::AMOUNT],
            merchant_category: category.to_owned(),
            hour: small(row[col::HOUR]),
            distance_from_home_km: row[col::DISTANCE],
            card_present: small(row[col::CARD_PRESENT]),
            device_age_days: row[col::DEVICE_AGE],
            velocity_1h: row[col::VELOCITY].round().max(0.0) as u32,
            country_mismatch: small(row[col::COUNTRY_MISMATCH]),
            account_age_days: row[col::ACCOUNT_AGE],
            avg_amount_30d: row[col::AVG_AMOUNT],
            is_fraud: u8::from(fraud),
        }
    }

    pub fn fraud(&self) -> bool {
        self.is_fraud != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{GeneratorConfig, generate};

    #[test]
    fn a_transaction_rebuilt_from_its_input_row_gives_the_same_row() {
        let rows = generate(&GeneratorConfig {
            rows: 500,
            seed: 7,
            drift: crate::data::Drift {
                new_category_share: 0.1,
                ..Default::default()
            },
            ..GeneratorConfig::default()
        })
        .unwrap();
        for t in &rows {
            let row = t.features().map(f64::from);
            let back = Transaction::from_features(t.transaction_id, t.timestamp, &row, t.fraud());
            assert_eq!(back.features(), t.features(), "{t:?}");
            assert_eq!(back.merchant_category, t.merchant_category);
            assert_eq!(back.fraud(), t.fraud());
        }
    }
}
