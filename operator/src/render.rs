//! Everything a Shop becomes, as plain objects: the Shop's children, each Microservice's
//! children and the SagaPolicy's ConfigMap. Used by `commerce-operator render` and the
//! offline schema checks; Secrets with generated material are left out.

use serde_json::Value;

use crate::controller::saga_policy::desired_config_map;
use crate::crd::Shop;
use crate::desired::microservice;
use crate::desired::shop::{self, DesiredError, Observed};

fn value<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("objects serialise")
}

pub fn everything(shop_resource: &Shop) -> Result<Vec<Value>, DesiredError> {
    let children = shop::desired(
        shop_resource,
        &Observed {
            signing_key_ids: vec!["k20260101T000000Z".to_owned()],
            referenced_saga_engine: None,
        },
    )?;
    let mut objects = Vec::new();
    for service in &children.microservices {
        objects.push(value(service));
        let owned = microservice::desired(service);
        objects.push(value(&owned.service_account));
        if let Some(config_map) = &owned.config_map {
            objects.push(value(config_map));
        }
        if let Some(deployment) = &owned.deployment {
            objects.push(value(deployment));
        }
        if let Some(stateful_set) = &owned.stateful_set {
            objects.push(value(stateful_set));
        }
        objects.push(value(&owned.service));
        objects.push(value(&owned.network_policy));
        if let Some(database) = &owned.database {
            objects.push(value(database));
        }
        if let Some(autoscaler) = &owned.autoscaler {
            objects.push(value(autoscaler));
        }
        if let Some(budget) = &owned.disruption_budget {
            objects.push(value(budget));
        }
        for route in &owned.routes {
            objects.push(value(route));
        }
    }
    for topic in &children.topics {
        objects.push(value(topic));
    }
    if let Some(policy) = &children.saga_policy {
        objects.push(value(policy));
        objects.push(value(&desired_config_map(policy)));
    }
    Ok(objects)
}
