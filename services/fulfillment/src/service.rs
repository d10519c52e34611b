//! Shipping-cost use cases.

use sqlx::PgPool;

use crate::domain::{self, Invalid, ParcelLine, Rate};
use crate::repository::{self as repo, Courier};

#[derive(Debug, thiserror::Error)]
pub enum FulfillmentError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("courier `{0}` not found")]
    UnknownCourier(String),
    #[error("{0}")]
    NotDeliverable(String),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
}

/// A priced parcel.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub rate: Rate,
    pub weight_g: i64,
}

#[derive(Clone)]
pub struct FulfillmentService {
    pool: PgPool,
    default_unit_weight_g: i64,
}

impl FulfillmentService {
    pub fn new(pool: PgPool, default_unit_weight_g: i64) -> Self {
        Self {
            pool,
            default_unit_weight_g,
        }
    }

    pub async fn shipping_cost(
        &self,
        courier: &str,
        country: &str,
        lines: &[ParcelLine],
    ) -> Result<Quote, FulfillmentError> {
        let courier = courier.trim().to_lowercase();
        let country = country.trim().to_uppercase();
        domain::check_country(&country)?;
        let weight_g = domain::parcel_weight(lines, self.default_unit_weight_g)?;
        match repo::courier_active(&self.pool, &courier).await? {
            None => return Err(FulfillmentError::UnknownCourier(courier)),
            Some(false) => {
                return Err(FulfillmentError::NotDeliverable(format!(
                    "courier `{courier}` is not taking parcels"
                )));
            }
            Some(true) => {}
        }
        let rates = repo::rates(&self.pool, &courier, &country).await?;
        let rate = domain::choose_rate(&rates, &country, weight_g)
            .cloned()
            .ok_or_else(|| {
                FulfillmentError::NotDeliverable(format!(
                    "courier `{courier}` does not take {weight_g} g to {country}"
                ))
            })?;
        Ok(Quote { rate, weight_g })
    }

    pub async fn couriers(&self) -> Result<Vec<Courier>, FulfillmentError> {
        Ok(repo::active_couriers(&self.pool).await?)
    }

    /// What each active courier charges for `units` default-weight units to `country`
    /// (the order service prices the same parcel the same way); couriers that cannot take
    /// it are left out.
    pub async fn quotes(
        &self,
        country: &str,
        units: i64,
    ) -> Result<Vec<(Courier, Quote)>, FulfillmentError> {
        let lines = [ParcelLine {
            quantity: units,
            unit_weight_g: None,
        }];
        let mut quotes = Vec::new();
        for courier in self.couriers().await? {
            match self.shipping_cost(&courier.code, country, &lines).await {
                Ok(quote) => quotes.push((courier, quote)),
                // Paused or no rate for this parcel: not on offer.
                Err(FulfillmentError::NotDeliverable(_) | FulfillmentError::UnknownCourier(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(quotes)
    }
}
