//! The root context of one worker: it validates the configuration, defines the stats,
//! hands the rollout in effect to each new request, and on its tick sends shadow
//! copies, adds the counts kept in the worker to Envoy's counters, and drives the link
//! to the scorer.

use std::rc::Rc;
use std::time::Duration;

use crate::config::Rollout;
use crate::host::{Buffer, Host, LogLevel, now_ms};
use crate::link::Link;
use crate::request::Request;
use crate::shadow::{Pace, SLOW_TICK_MS};
use crate::stats::{COUNTER_FLUSH_MS, LinkStats};
use crate::worker::{Active, Worker};

/// Configuration documents larger than this are refused unread.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

pub struct Root {
    /// This worker's id towards the scorer, and the seed of its randomness.
    seed: u64,
    /// Configurations applied so far: each gets fresh randomness.
    generation: u64,
    active: Option<Rc<Active>>,
    /// Workers of earlier configurations that requests in flight still record into;
    /// their counts are flushed until the last such request ends.
    retired: Vec<Rc<Worker>>,
    link: Option<Link>,
    /// When the link is next due (the tick may be faster for shadows).
    next_link_ms: u64,
    next_counters_ms: u64,
    /// The tick's period while shadows are configured.
    pace: Pace,
}

fn describe(rollout: &Rollout) -> String {
    rollout
        .variants
        .iter()
        .map(|v| format!("{}={}bp", v.name, v.weight_bp))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Root {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            generation: 0,
            active: None,
            retired: Vec::new(),
            link: None,
            next_link_ms: 0,
            next_counters_ms: 0,
            pace: Pace::new(),
        }
    }

    /// Reads, validates and applies the configuration document of `size` bytes. A
    /// refused one is logged with its reason, and whatever was in effect stays.
    pub fn configure(&mut self, host: &impl Host, size: usize) -> bool {
        match self.load(host, size) {
            Ok(()) => {
                if let Some(active) = &self.active {
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "rollout `{}` configured: {}",
                            active.rollout.name,
                            describe(&active.rollout)
                        ),
                    );
                }
                true
            }
            Err(message) => {
                host.log(LogLevel::Error, &message);
                false
            }
        }
    }

    fn load(&mut self, host: &impl Host, size: usize) -> Result<(), String> {
        if size > MAX_CONFIG_BYTES {
            return Err(format!(
                "invalid configuration: the document has {size} bytes, the limit is {MAX_CONFIG_BYTES}"
            ));
        }
        let document = host
            .buffer(Buffer::PluginConfiguration, size)
            .ok_or("cannot read the configuration")?;
        let rollout =
            Rollout::from_json(&document, |name| host.env(name)).map_err(|e| e.to_string())?;
        let now = now_ms(host);
        self.generation += 1;
        let seed = self.seed.wrapping_add(self.generation);
        let worker = Rc::new(Worker::new(host, &rollout, seed, now)?);
        let link = match rollout.scorer.clone() {
            Some(config) => {
                let proxy = host
                    .node_id()
                    .unwrap_or_else(|| shared_proxy_id(host, self.seed));
                let stats = worker
                    .record(|r| LinkStats::define(host, &mut r.counters, &rollout.name))
                    .ok_or("cannot define the scorer link's stats")??;
                // Per configuration: a reconfigured worker starts its batch
                // sequence again, under an id of its own.
                Some(Link::new(config, &rollout.name, seed, proxy, stats, now))
            }
            None => None,
        };
        let period = match (&link, rollout.shadows.is_empty()) {
            (_, false) => Duration::from_millis(SLOW_TICK_MS),
            (Some(link), true) => link
                .tick_period()
                .min(Duration::from_millis(COUNTER_FLUSH_MS)),
            (None, true) => Duration::from_millis(COUNTER_FLUSH_MS),
        };
        if !host.set_tick(period) {
            return Err("cannot set a tick period".to_owned());
        }
        self.pace = Pace::new();
        self.link = link;
        self.next_link_ms = now;
        self.next_counters_ms = now + COUNTER_FLUSH_MS;
        if let Some(previous) = self.active.replace(Rc::new(Active { rollout, worker })) {
            previous.worker.retire();
            previous.worker.record(|r| r.flush_counters(host));
            self.retired.push(previous.worker.clone());
        }
        Ok(())
    }

    /// The stream context for a new request: it keeps the rollout in effect now.
    pub fn request(&self) -> Request {
        Request::new(self.active.clone())
    }

    pub fn tick(&mut self, host: &impl Host) {
        let Some(active) = self.active.clone() else {
            return;
        };
        let now = now_ms(host);
        if !active.rollout.shadows.is_empty() {
            self.send_shadow_copies(host, &active, now);
        }
        self.drive_link(host, &active, now);
        // After the link: a state it just applied may lift a trip another worker's
        // record still lists.
        active.worker.follow_guardrail(host, now);
        if now >= self.next_counters_ms {
            self.next_counters_ms = now + COUNTER_FLUSH_MS;
            self.flush_counters(host);
        }
    }

    fn drive_link(&mut self, host: &impl Host, active: &Active, now: u64) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if now < self.next_link_ms {
            return;
        }
        self.next_link_ms = now + u64::try_from(link.tick_period().as_millis()).unwrap_or(250);
        let worker = &active.worker;
        let updated = worker
            .record(|r| link.tick(host, now, &active.rollout, r))
            .flatten();
        if let Some(rollout) = updated {
            worker.state_applied(host, &rollout, link.version());
            host.log(
                LogLevel::Info,
                &format!(
                    "rollout `{}` weights from the scorer: {}",
                    rollout.name,
                    describe(&rollout)
                ),
            );
            self.active = Some(Rc::new(Active {
                rollout,
                worker: worker.clone(),
            }));
        }
    }

    fn send_shadow_copies(&mut self, host: &impl Host, active: &Active, now: u64) {
        let longest = active
            .rollout
            .shadows
            .iter()
            .map(|s| s.timeout_ms)
            .max()
            .unwrap_or(0);
        let pace = &mut self.pace;
        active.worker.at_desk(host, |desk, events| {
            let sent = desk.dispatch(host, now, events);
            if let Some(ms) = pace.after_tick(now, sent) {
                // Not fatal if refused: the tick just keeps its period.
                host.set_tick(Duration::from_millis(ms));
            }
            desk.expire(now, longest);
        });
    }

    /// Adds the counts kept in the workers to Envoy's counters, and lets go of retired
    /// workers no request holds any more.
    pub fn flush_counters(&mut self, host: &impl Host) {
        if let Some(active) = &self.active {
            active.worker.record(|r| r.flush_counters(host));
        }
        for worker in &self.retired {
            worker.record(|r| r.flush_counters(host));
        }
        self.retired.retain(|w| Rc::strong_count(w) > 1);
    }

    /// The answer to an HTTP call: a shadow's, or the scorer's.
    pub fn call_response(&mut self, host: &impl Host, token: u32, body_size: usize) {
        let Some(active) = self.active.clone() else {
            return;
        };
        let now = now_ms(host);
        let shadow_call = active
            .worker
            .at_desk(host, |desk, events| {
                desk.on_response(host, token, body_size, now, events)
            })
            .unwrap_or(false);
        if shadow_call {
            return;
        }
        if let Some(link) = self.link.as_mut() {
            active
                .worker
                .record(|r| link.on_response(host, token, body_size, now, &mut r.counters));
        }
    }

    /// The plugin is going away: whatever is counted goes to Envoy first.
    pub fn done(&mut self, host: &impl Host) {
        self.flush_counters(host);
    }

    /// The rollout in effect.
    pub fn rollout(&self) -> Option<&Rollout> {
        self.active.as_ref().map(|a| &a.rollout)
    }
}

/// An Envoy without a node id is named by the first of its workers to ask, through
/// shared data, so that all its workers report as one proxy.
fn shared_proxy_id(host: &impl Host, seed: u64) -> String {
    const KEY: &str = "outrider/proxy-id";
    let stored = || {
        host.shared_get(KEY)
            .0
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|id| !id.is_empty())
    };
    if let Some(id) = stored() {
        return id;
    }
    let mine = format!("envoy-{seed:016x}");
    host.shared_set(KEY, mine.as_bytes(), None);
    // Two workers writing at once: both read back the one that stayed.
    stored().unwrap_or(mine)
}
