//! Fan-out of Redis Pub/Sub messages to many local listeners.
//!
//! A process holds ONE subscriber connection however many streams it serves: listeners
//! ask [`Fanout::subscribe`] for a channel, the first listener of a channel subscribes it
//! at Redis, the last one to leave unsubscribes it. Messages reach listeners through a
//! bounded local broadcast, so a slow listener never stalls the connection or the others:
//! it is told it missed something ([`Delivery::Gap`]) and re-reads its source of truth.
//! After a lost connection the fan-out reconnects, subscribes every live channel again and
//! sends every listener a gap, since messages published meanwhile are gone.
//!
//! On a Redis Cluster a classic `PUBLISH` reaches subscribers on every node, so the
//! subscriber connection may be to any node; the seed URLs are tried in turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{RedisClient, RedisConfig, RedisError};

/// What a listener receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Message(Arc<[u8]>),
    /// Messages may have been missed (a lagging listener, a reconnect): re-read the source.
    Gap,
}

enum Command {
    Subscribe(String, oneshot::Sender<Result<(), RedisError>>),
    Unsubscribe(String),
}

struct Channels {
    senders: HashMap<String, broadcast::Sender<Delivery>>,
    /// Listeners per channel; the channel is dropped at Redis when it reaches zero.
    listeners: HashMap<String, usize>,
}

/// One subscriber connection shared by every listener of the process. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    channels: Arc<Mutex<Channels>>,
    commands: mpsc::UnboundedSender<Command>,
    buffer: usize,
}

/// A listener of one channel; dropping it leaves the channel.
pub struct Listener {
    channel: String,
    receiver: broadcast::Receiver<Delivery>,
    fanout: Fanout,
}

impl Listener {
    /// The next delivery; `None` once the fan-out has shut down.
    pub async fn next(&mut self) -> Option<Delivery> {
        match self.receiver.recv().await {
            Ok(delivery) => Some(delivery),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                metrics::counter!("redis_fanout_lagged_total").increment(missed);
                Some(Delivery::Gap)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.fanout.leave(&self.channel);
    }
}

impl Fanout {
    /// Starts the subscriber task; it runs until `shutdown`. `buffer` bounds how many
    /// messages a listener may fall behind before it gets a gap.
    pub fn start(config: &RedisConfig, buffer: usize, shutdown: CancellationToken) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let fanout = Self {
            channels: Arc::new(Mutex::new(Channels {
                senders: HashMap::new(),
                listeners: HashMap::new(),
            })),
            commands,
            buffer: buffer.max(1),
        };
        tokio::spawn(subscriber(
            config.urls.clone(),
            fanout.channels.clone(),
            receiver,
            shutdown,
        ));
        fanout
    }

    /// Listens to `channel`. Returns once Redis confirmed the subscription, so anything
    /// published afterwards reaches the listener.
    pub async fn subscribe(&self, channel: &str) -> Result<Listener, RedisError> {
        let receiver = {
            let mut channels = self.channels.lock().expect("fanout lock");
            let buffer = self.buffer;
            let sender = channels
                .senders
                .entry(channel.to_owned())
                .or_insert_with(|| broadcast::channel(buffer).0);
            let receiver = sender.subscribe();
            *channels.listeners.entry(channel.to_owned()).or_insert(0) += 1;
            receiver
        };
        let listener = Listener {
            channel: channel.to_owned(),
            receiver,
            fanout: self.clone(),
        };
        // Every listener waits for a confirmation, not only the first: a second listener
        // arriving while the first subscription is in flight must not return early.
        // (SUBSCRIBE to a channel already subscribed is a no-op at Redis.)
        let (done, confirmed) = oneshot::channel();
        self.commands
            .send(Command::Subscribe(channel.to_owned(), done))
            .map_err(|_| RedisError::Config("the fan-out has shut down".into()))?;
        confirmed
            .await
            .map_err(|_| RedisError::Config("the fan-out has shut down".into()))??;
        Ok(listener)
    }

    fn leave(&self, channel: &str) {
        let mut channels = self.channels.lock().expect("fanout lock");
        let Some(count) = channels.listeners.get_mut(channel) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            channels.listeners.remove(channel);
            channels.senders.remove(channel);
            let _ = self.commands.send(Command::Unsubscribe(channel.to_owned()));
        }
    }

    /// Publishes `payload` on `channel`; returns how many subscriber connections got it.
    pub async fn publish(
        client: &RedisClient,
        channel: &str,
        payload: &[u8],
    ) -> Result<usize, RedisError> {
        let mut connection = client.clone();
        let receivers: usize = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut connection)
            .await?;
        Ok(receivers)
    }
}

async fn subscriber(
    urls: Vec<String>,
    channels: Arc<Mutex<Channels>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
) {
    let mut attempt: u32 = 0;
    let mut reconnected = false;
    loop {
        let url = &urls[attempt as usize % urls.len()];
        let connected = async {
            let client = redis::Client::open(url.as_str())?;
            client.get_async_pubsub().await
        };
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            pubsub = connected => pubsub,
        };
        let (mut sink, mut stream) = match pubsub {
            Ok(pubsub) => pubsub.split(),
            Err(error) => {
                attempt += 1;
                tracing::warn!(%url, %error, "redis fan-out cannot connect; retrying");
                let pause = Duration::from_millis(100 * u64::from(attempt.min(20)));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let live: Vec<String> = channels
            .lock()
            .expect("fanout lock")
            .listeners
            .keys()
            .cloned()
            .collect();
        if !live.is_empty() && sink.subscribe(&live).await.is_err() {
            attempt += 1;
            continue;
        }
        if reconnected {
            // Whatever was published while we were away is lost: every listener re-reads.
            for sender in channels.lock().expect("fanout lock").senders.values() {
                let _ = sender.send(Delivery::Gap);
            }
            metrics::counter!("redis_fanout_reconnects_total").increment(1);
        }
        attempt = 0;
        reconnected = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Subscribe(channel, done)) => {
                        let result = sink.subscribe(&channel).await.map_err(RedisError::from);
                        let failed = result.is_err();
                        let _ = done.send(result);
                        if failed { break; }
                    }
                    Some(Command::Unsubscribe(channel)) => {
                        // Someone may have joined again since the last one left.
                        let still_wanted = channels
                            .lock()
                            .expect("fanout lock")
                            .listeners
                            .contains_key(&channel);
                        if !still_wanted && sink.unsubscribe(&channel).await.is_err() {
                            break;
                        }
                    }
                },
                message = stream.next() => match message {
                    None => break,
                    Some(message) => {
                        let channel = message.get_channel_name().to_owned();
                        let payload: Arc<[u8]> = Arc::from(message.get_payload_bytes());
                        if let Some(sender) = channels.lock().expect("fanout lock").senders.get(&channel) {
                            let _ = sender.send(Delivery::Message(payload));
                        }
                    }
                },
            }
        }
        tracing::warn!(%url, "redis fan-out connection lost; reconnecting");
    }
}
