//! The simulated people's accounts. Shoppers sign up through the real path (`UserRegistered`
//! → notification → SMTP), confirm from the link in the e-mail MailDev caught, sign in and
//! add an address; staff sign in with a given account.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::client::{Caller, Failure, Shop, text};

/// A signed-in shopper with an address to ship to.
#[derive(Debug, Clone)]
pub struct Shopper {
    pub email: String,
    pub caller: Caller,
    pub address_id: String,
    /// A visit stopped with things in the cart: the next one empties it first.
    pub cart_in_use: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Request(#[from] Failure),
    #[error("MailDev at {url} did not answer")]
    Mail {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "no verification e-mail reached MailDev at {url} within {waited:?} for {missing} of the new accounts (is the shop's SMTP pointed at it?)"
    )]
    NoVerificationMail {
        url: String,
        waited: Duration,
        missing: usize,
    },
}

/// How many sign-ups run at once: each hashes a password on the shop (argon2).
const SIGN_UPS_AT_ONCE: usize = 4;
const MAIL_WAIT: Duration = Duration::from_secs(90);

/// The client address shopper `index` comes from (`10.x.y.z`), when shoppers have their own.
pub fn client_address(index: usize) -> String {
    let n = index + 1;
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// Signs up `count` shoppers named after `run`, confirms them from MailDev at `mail`, signs
/// them in and gives each an address.
pub async fn sign_up_shoppers(
    shop: &Shop,
    mail: &str,
    run: &str,
    count: usize,
    own_addresses: bool,
) -> Result<Vec<Shopper>, AccountError> {
    let password = format!("simulated-{run}-Password1");
    let people: Vec<(String, Caller)> = (0..count)
        .map(|index| {
            let caller = Caller {
                token: None,
                address: own_addresses.then(|| client_address(index)),
            };
            (
                format!("shopper-{index}.{run}@simulated.commerce.local"),
                caller,
            )
        })
        .collect();
    futures::stream::iter(&people)
        .map(|(email, caller)| {
            let request = shop
                .request(Method::POST, "/v1/auth/register", caller)
                .json(&json!({"email": email, "password": password,
                              "firstName": "Simulated", "lastName": "Shopper"}));
            shop.call_now("sign_up", request)
        })
        .buffer_unordered(SIGN_UPS_AT_ONCE)
        .try_collect::<Vec<_>>()
        .await?;
    let tokens = verification_tokens(shop.http(), mail, &people).await?;
    futures::stream::iter(people)
        .map(|(email, mut caller)| {
            let (password, token) = (&password, &tokens[&email]);
            async move {
                shop.call_now(
                    "verify_email",
                    shop.request(Method::POST, "/v1/auth/verify-email", &caller)
                        .json(&json!({"token": token})),
                )
                .await?;
                caller.token = Some(sign_in(shop, &caller, &email, password).await?);
                let address = shop
                    .call_now(
                        "add_address",
                        shop.request(Method::POST, "/v1/users/me/addresses", &caller)
                            .json(&json!({"recipient": "Simulated Shopper",
                                          "line1": "1 Load Street", "city": "Springfield",
                                          "postalCode": "12345", "country": "US"})),
                    )
                    .await?;
                let address_id = text(&address, "add_address", "id")?.to_owned();
                Ok::<_, AccountError>(Shopper {
                    email,
                    caller,
                    address_id,
                    cart_in_use: false,
                })
            }
        })
        .buffer_unordered(SIGN_UPS_AT_ONCE)
        .try_collect()
        .await
}

/// Signs `email` in; its access token.
pub async fn sign_in(
    shop: &Shop,
    caller: &Caller,
    email: &str,
    password: &str,
) -> Result<String, Failure> {
    let answer = shop
        .call_now(
            "sign_in",
            shop.request(Method::POST, "/v1/auth/login", caller)
                .json(&json!({"email": email, "password": password})),
        )
        .await?;
    Ok(text(&answer, "sign_in", "accessToken")?.to_owned())
}

/// A staff member signed in with the given account.
pub async fn staff(shop: &Shop, email: &str, password: &SecretString) -> Result<Caller, Failure> {
    let caller = Caller::default();
    let token = sign_in(shop, &caller, email, password.expose_secret()).await?;
    Ok(Caller {
        token: Some(token),
        ..caller
    })
}

/// The verification token e-mailed to each of `people`, read from MailDev.
async fn verification_tokens(
    http: &reqwest::Client,
    mail: &str,
    people: &[(String, Caller)],
) -> Result<BTreeMap<String, String>, AccountError> {
    let url = format!("{}/email", mail.trim_end_matches('/'));
    let started = Instant::now();
    let mut tokens = BTreeMap::new();
    loop {
        let inbox: Vec<Value> = http
            .get(&url)
            .send()
            .await
            .and_then(|response| response.error_for_status())
            .map_err(|source| AccountError::Mail {
                url: url.clone(),
                source,
            })?
            .json()
            .await
            .map_err(|source| AccountError::Mail {
                url: url.clone(),
                source,
            })?;
        for message in &inbox {
            let to = message["to"][0]["address"].as_str().unwrap_or_default();
            if people.iter().any(|(email, _)| email == to)
                && let Some(token) = message["text"].as_str().and_then(token_in_link)
            {
                tokens.insert(to.to_owned(), token);
            }
        }
        if tokens.len() == people.len() {
            return Ok(tokens);
        }
        if started.elapsed() > MAIL_WAIT {
            return Err(AccountError::NoVerificationMail {
                url,
                waited: MAIL_WAIT,
                missing: people.len() - tokens.len(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The `token` query parameter of the first link in `text` that has one.
fn token_in_link(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '(' | ')'))
        .filter(|word| word.starts_with("http") && word.contains("token="))
        .filter_map(|link| reqwest::Url::parse(link).ok())
        .find_map(|link| {
            link.query_pairs()
                .find(|(name, _)| name == "token")
                .map(|(_, token)| token.into_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_link_and_decoded() {
        let mail = "Welcome!\nConfirm: <http://localhost:8080/v1/auth/verify-email?token=ab%2Bc_d&x=1>\nThanks";
        assert_eq!(token_in_link(mail).as_deref(), Some("ab+c_d"));
        assert_eq!(token_in_link("no link here, token=abc"), None);
    }

    #[test]
    fn shoppers_get_distinct_private_addresses() {
        assert_eq!(client_address(0), "10.0.0.1");
        assert_eq!(client_address(255), "10.0.1.0");
        assert_ne!(client_address(70_000), client_address(70_001));
    }
}
