//! Feature engineering, written once as an ONNX subgraph: training runs it
//! (through tract) to build its design matrix, and the exported model carries
//! the very same nodes in front of its linear head, so serving can never
//! compute features differently from training.
//!
//! Amounts, distances and ages enter on a log scale; the hour as a point on
//! the clock (sine and cosine) plus a night flag; the merchant category one-hot
//! (an unseen code, such as a new category, sets no column); and three
//! interactions that carry the classic fraud signatures.

use crate::data::schema::{MERCHANT_CATEGORIES, N_FEATURES, col};
use crate::onnx::builder::{Attr, Dim, GraphBuilder};

/// Below this many days a device or account counts as new.
const NEW_DEVICE_DAYS: f32 = 3.0;
const NEW_ACCOUNT_DAYS: f32 = 60.0;
/// Hours before 6 am.
const NIGHT_END_HOUR: f32 = 6.0;

/// The engineered features, in the order of the design matrix's columns.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = [
        "log_amount",
        "log_amount_to_avg",
        "hour_sin",
        "hour_cos",
        "night",
        "log_distance",
        "card_present",
        "log_device_age",
        "new_device",
        "log_velocity",
        "country_mismatch",
        "log_account_age",
        "new_account",
        "not_present_x_log_amount_to_avg",
        "mismatch_x_log_distance",
        "new_device_x_not_present",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.extend(MERCHANT_CATEGORIES.iter().map(|c| format!("merchant_{c}")));
    names
}

/// Adds the feature nodes on top of the `[N, 10]` input and returns the name
/// of the `[N, D]` design matrix, D = `names().len()`.
pub fn add(g: &mut GraphBuilder, input: &str) -> String {
    let outputs: Vec<String> = (0..N_FEATURES).map(|i| format!("column_{i}")).collect();
    g.node_with_outputs("Split", &[input], vec![("axis", Attr::Int(1))], &outputs);
    let column = |i: usize| outputs[i].clone();

    let one = g.scalar_f32("one", 1.0);
    // ln(1 + max(x, 0)): defined for every finite input.
    let log1p = |g: &mut GraphBuilder, x: &str| {
        let relu = g.node("Relu", &[x], vec![]);
        let plus = g.node("Add", &[&relu, &one], vec![]);
        g.node("Log", &[&plus], vec![])
    };
    let below = |g: &mut GraphBuilder, x: &str, limit: f32| {
        let limit = g.scalar_f32("limit", limit);
        let less = g.node("Less", &[x, &limit], vec![]);
        g.node("Cast", &[&less], vec![("to", Attr::Int(1))])
    };

    let log_amount = log1p(g, &column(col::AMOUNT));
    let log_avg = log1p(g, &column(col::AVG_AMOUNT));
    let log_ratio = g.node("Sub", &[&log_amount, &log_avg], vec![]);

    let radians = g.scalar_f32("radians_per_hour", std::f32::consts::TAU / 24.0);
    let angle = g.node("Mul", &[&column(col::HOUR), &radians], vec![]);
    let hour_sin = g.node("Sin", &[&angle], vec![]);
    let hour_cos = g.node("Cos", &[&angle], vec![]);
    let night = below(g, &column(col::HOUR), NIGHT_END_HOUR);

    let log_distance = log1p(g, &column(col::DISTANCE));
    let card_present = column(col::CARD_PRESENT);
    let not_present = g.node("Sub", &[&one, &card_present], vec![]);
    let log_device_age = log1p(g, &column(col::DEVICE_AGE));
    let new_device = below(g, &column(col::DEVICE_AGE), NEW_DEVICE_DAYS);
    let log_velocity = log1p(g, &column(col::VELOCITY));
    let mismatch = column(col::COUNTRY_MISMATCH);
    let log_account_age = log1p(g, &column(col::ACCOUNT_AGE));
    let new_account = below(g, &column(col::ACCOUNT_AGE), NEW_ACCOUNT_DAYS);

    let not_present_ratio = g.node("Mul", &[&not_present, &log_ratio], vec![]);
    let mismatch_distance = g.node("Mul", &[&mismatch, &log_distance], vec![]);
    let new_device_not_present = g.node("Mul", &[&new_device, &not_present], vec![]);

    // One-hot: compare the code with every known code at once ([N,1] vs [1,K]).
    let codes: Vec<f32> = (0..MERCHANT_CATEGORIES.len()).map(|c| c as f32).collect();
    let codes = g.const_f32("merchant_codes", &[1, codes.len() as i64], codes);
    let equal = g.node("Equal", &[&column(col::MERCHANT_CATEGORY), &codes], vec![]);
    let one_hot = g.node("Cast", &[&equal], vec![("to", Attr::Int(1))]);

    let parts = [
        log_amount,
        log_ratio,
        hour_sin,
        hour_cos,
        night,
        log_distance,
        card_present,
        log_device_age,
        new_device,
        log_velocity,
        mismatch,
        log_account_age,
        new_account,
        not_present_ratio,
        mismatch_distance,
        new_device_not_present,
        one_hot,
    ];
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    g.node("Concat", &parts, vec![("axis", Attr::Int(1))])
}

/// A model whose output `features` is the design matrix of its input.
pub fn model() -> tract_onnx::pb::ModelProto {
    let mut g = GraphBuilder::default();
    let input = g.input_f32(
        crate::data::schema::INPUT,
        &[Dim::Named("N"), Dim::Fixed(N_FEATURES as i64)],
    );
    let z = add(&mut g, &input);
    g.output_as(&z, "features");
    let d = names().len() as i64;
    g.finish(
        "fraud_features",
        &[("features", &[Dim::Named("N"), Dim::Fixed(d)])],
        &[],
        "Feature engineering of the outrider fraud model.",
    )
}
