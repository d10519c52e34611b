//! The payment report staff read (`GET /v1/admin/payments/report`, and as CSV): money
//! taken, refunded and kept per day, gateway and currency, and per currency the average
//! order value and the refund and dispute rates. Pure: the rows come from
//! `repository::report_rows`.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use commerce_runtime::api::money_scale;

/// One day, gateway and currency: payments taken that day (by when they succeeded),
/// refunds that went through that day, disputes opened that day.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRow {
    pub day: NaiveDate,
    pub gateway: String,
    pub currency: String,
    pub paid: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub revenue: Decimal,
    pub refunds: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub net: Decimal,
    pub disputes: i64,
}

/// What the store counted for one day, gateway and currency.
#[derive(Debug, Clone, PartialEq)]
pub struct DayCounts {
    pub day: NaiveDate,
    pub gateway: String,
    pub currency: String,
    pub paid: i64,
    pub revenue: Decimal,
    pub refunds: i64,
    pub refunded: Decimal,
    pub disputes: i64,
}

impl From<DayCounts> for ReportRow {
    fn from(counts: DayCounts) -> Self {
        Self {
            day: counts.day,
            gateway: counts.gateway,
            currency: counts.currency,
            paid: counts.paid,
            revenue: money_scale(counts.revenue),
            refunds: counts.refunds,
            refunded: money_scale(counts.refunded),
            net: money_scale(counts.revenue - counts.refunded),
            disputes: counts.disputes,
        }
    }
}

/// A currency's whole period. Rates are shares of the payments taken (0 when none were).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyTotals {
    pub currency: String,
    pub paid: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub revenue: Decimal,
    pub refunds: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub net: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub average_order_value: Decimal,
    /// Refunds per payment taken, to four decimals.
    #[serde(with = "rust_decimal::serde::str")]
    pub refund_rate: Decimal,
    /// Disputes per payment taken, to four decimals.
    #[serde(with = "rust_decimal::serde::str")]
    pub dispute_rate: Decimal,
}

/// The period's totals, one per currency (money never adds across currencies).
pub fn totals(rows: &[ReportRow]) -> Vec<CurrencyTotals> {
    let mut by_currency: std::collections::BTreeMap<&str, (i64, Decimal, i64, Decimal, i64)> =
        std::collections::BTreeMap::new();
    for row in rows {
        let entry = by_currency.entry(&row.currency).or_default();
        entry.0 += row.paid;
        entry.1 += row.revenue;
        entry.2 += row.refunds;
        entry.3 += row.refunded;
        entry.4 += row.disputes;
    }
    by_currency
        .into_iter()
        .map(|(currency, (paid, revenue, refunds, refunded, disputes))| {
            let share = |count: i64| {
                if paid == 0 {
                    Decimal::ZERO
                } else {
                    (Decimal::from(count) / Decimal::from(paid)).round_dp(4)
                }
            };
            CurrencyTotals {
                currency: currency.to_owned(),
                paid,
                revenue: money_scale(revenue),
                refunds,
                refunded: money_scale(refunded),
                net: money_scale(revenue - refunded),
                average_order_value: if paid == 0 {
                    money_scale(Decimal::ZERO)
                } else {
                    money_scale((revenue / Decimal::from(paid)).round_dp(2))
                },
                refund_rate: share(refunds),
                dispute_rate: share(disputes),
            }
        })
        .collect()
}

/// The rows as CSV (RFC 4180, a header line first), for a spreadsheet.
pub fn csv(rows: &[ReportRow]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        writer.write_record(CSV_HEADER)?;
    }
    for row in rows {
        writer.serialize(row)?;
    }
    writer
        .into_inner()
        .map_err(|error| error.into_error().into())
}

/// The columns, as `serialize` names them from `ReportRow`'s fields.
const CSV_HEADER: [&str; 9] = [
    "day", "gateway", "currency", "paid", "revenue", "refunds", "refunded", "net", "disputes",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(raw: &str) -> Decimal {
        Decimal::from_str(raw).unwrap()
    }

    fn row(day: u32, gateway: &str, currency: &str, paid: i64, revenue: &str) -> ReportRow {
        ReportRow::from(DayCounts {
            day: NaiveDate::from_ymd_opt(2026, 12, day).unwrap(),
            gateway: gateway.into(),
            currency: currency.into(),
            paid,
            revenue: dec(revenue),
            refunds: 0,
            refunded: Decimal::ZERO,
            disputes: 0,
        })
    }

    #[test]
    fn net_is_what_was_taken_less_what_went_back() {
        let row = ReportRow::from(DayCounts {
            day: NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            gateway: "stripe".into(),
            currency: "USD".into(),
            paid: 3,
            revenue: dec("60"),
            refunds: 1,
            refunded: dec("12.5"),
            disputes: 0,
        });
        assert_eq!(row.net.to_string(), "47.50");
        assert_eq!(row.revenue.to_string(), "60.00");
    }

    #[test]
    fn totals_keep_currencies_apart_and_rates_are_shares_of_payments() {
        let mut refunded = row(7, "stripe", "USD", 2, "30");
        refunded.refunds = 1;
        refunded.refunded = dec("10.00");
        refunded.disputes = 1;
        let rows = vec![
            row(6, "offline", "USD", 1, "20"),
            refunded,
            row(7, "xendit", "IDR", 3, "150000"),
        ];
        let totals = totals(&rows);
        assert_eq!(totals.len(), 2);
        let idr = &totals[0];
        assert_eq!(
            (idr.currency.as_str(), idr.paid, idr.refund_rate),
            ("IDR", 3, Decimal::ZERO)
        );
        let usd = &totals[1];
        assert_eq!(usd.paid, 3);
        assert_eq!(usd.revenue.to_string(), "50.00");
        assert_eq!(usd.net.to_string(), "40.00");
        assert_eq!(usd.average_order_value.to_string(), "16.67");
        assert_eq!(usd.refund_rate.to_string(), "0.3333");
        assert_eq!(usd.dispute_rate.to_string(), "0.3333");
    }

    #[test]
    fn the_csv_has_a_header_and_a_line_per_row_even_when_empty() {
        let text = String::from_utf8(csv(&[row(7, "stripe", "USD", 2, "30")]).unwrap()).unwrap();
        assert_eq!(
            text,
            "day,gateway,currency,paid,revenue,refunds,refunded,net,disputes\n\
             2026-12-07,stripe,USD,2,30.00,0,0.00,30.00,0\n"
        );
        let empty = String::from_utf8(csv(&[]).unwrap()).unwrap();
        assert_eq!(empty.lines().next(), text.lines().next());
        assert_eq!(empty.lines().count(), 1);
        // A field with a comma or a quote is quoted.
        let odd =
            String::from_utf8(csv(&[row(7, "pay, \"now\"", "USD", 1, "1")]).unwrap()).unwrap();
        assert!(odd.contains(",\"pay, \"\"now\"\"\",USD,"), "{odd}");
    }

    #[test]
    fn a_period_without_payments_has_no_rates_to_divide_by() {
        let mut only_refund = row(7, "stripe", "EUR", 0, "0");
        only_refund.refunds = 1;
        only_refund.refunded = dec("5.00");
        let totals = totals(&[only_refund]);
        assert_eq!(totals[0].net.to_string(), "-5.00");
        assert_eq!(totals[0].average_order_value.to_string(), "0.00");
        assert_eq!(totals[0].refund_rate, Decimal::ZERO);
    }
}
