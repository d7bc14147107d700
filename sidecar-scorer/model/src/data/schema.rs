//! The columns of a card transaction and the model input built from them.

/// Merchant categories seen in training, in the order of their codes.
pub const MERCHANT_CATEGORIES: [&str; 10] = [
    "grocery",
    "restaurant",
    "gas",
    "pharmacy",
    "entertainment",
    "online_retail",
    "electronics",
    "travel",
    "jewelry",
    "gift_cards",
];

/// The category that covariate drift introduces; the model never saw it.
pub const NEW_MERCHANT_CATEGORY: &str = "crypto_exchange";

/// The model's input features, in the order of the input tensor's columns.
pub const FEATURES: [&str; 10] = [
    "amount",
    "merchant_category",
    "hour",
    "distance_from_home_km",
    "card_present",
    "device_age_days",
    "velocity_1h",
    "country_mismatch",
    "account_age_days",
    "avg_amount_30d",
];

/// Column of each feature in the input tensor.
pub mod col {
    pub const AMOUNT: usize = 0;
    pub const MERCHANT_CATEGORY: usize = 1;
    pub const HOUR: usize = 2;
    pub const DISTANCE: usize = 3;
    pub const CARD_PRESENT: usize = 4;
    pub const DEVICE_AGE: usize = 5;
    pub const VELOCITY: usize = 6;
    pub const COUNTRY_MISMATCH: usize = 7;
    pub const ACCOUNT_AGE: usize = 8;
    pub const AVG_AMOUNT: usize = 9;
}

/// Number of input features.
pub const N_FEATURES: usize = FEATURES.len();

/// The features that take a category name (encoded as its code in the tensor).
pub const CATEGORICAL: [&str; 1] = ["merchant_category"];

/// Name of the model's input tensor.
pub const INPUT: &str = "transaction";
/// Name of the model's output tensor: the probability of fraud.
pub const OUTPUT: &str = "score";

/// The code of a merchant category: its index in [`MERCHANT_CATEGORIES`], the
/// next code for [`NEW_MERCHANT_CATEGORY`], `None` for anything else.
pub fn merchant_code(name: &str) -> Option<usize> {
    MERCHANT_CATEGORIES
        .iter()
        .position(|c| *c == name)
        .or_else(|| (name == NEW_MERCHANT_CATEGORY).then_some(MERCHANT_CATEGORIES.len()))
}

/// Every category name the generator writes, by code.
pub fn all_merchant_categories() -> Vec<&'static str> {
    let mut all = MERCHANT_CATEGORIES.to_vec();
    all.push(NEW_MERCHANT_CATEGORY);
    all
}
