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

    pub fn fraud(&self) -> bool {
        self.is_fraud != 0
    }
}
