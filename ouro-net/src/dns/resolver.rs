//! The resolver component: its table of lookups, the search list walked
//! candidate by candidate, answers delivered as messages.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ouro::{Completion, Ctx, Outcome, Payload, Ring, RingHandle, Task};

use super::config::Config;
use super::exchange::{Ended, Exchange, Plan};
use super::hosts::Hosts;
use super::local::{local_answer, not_found};
use super::reload::{FileWatch, HostsWatch, ResolvConfWatch};
use super::search::{candidates, is_well_formed, presentation};
use super::sort::sort_destinations;
use super::wire::{Record, RecordType};

/// What a finished lookup found: the canonical name and its records (for
/// [`Resolver::lookup_ip`], the addresses of both families, in RFC 6724
/// order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The name the records belong to, after the search list and CNAMEs,
    /// in presentation form without needless escapes (`web.corp.example`
    /// for a lookup of `w\eb`); for a hosts file entry, its line's
    /// official (first) name; for a numeric name, the name as given.
    pub name: String,
    /// The records found.
    pub records: Vec<Record>,
}

impl Answer {
    /// The addresses among the records, in their order.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::A(v4) => Some(IpAddr::V4(*v4)),
                Record::Aaaa(v6) => Some(IpAddr::V6(*v6)),
                _ => None,
            })
            .collect()
    }
}

/// The answer a lookup's completion carries: its callback gets an
/// [`Outcome::Message`] holding it. Any other completion is an
/// `InvalidInput` error.
pub fn answer(c: Completion) -> io::Result<Answer> {
    lookup_answer(c).1
}

/// What a lookup's completion carries: which lookup ended, and how.
struct LookupEnded {
    id: LookupId,
    result: io::Result<Answer>,
}

/// Which lookup a completion ended (`None` if it is no lookup's), and its
/// answer: for the connector, whose task keys are too short to tell an
/// answer to a connect that has ended from one to the connect now in its
/// slot.
pub(crate) fn lookup_answer(c: Completion) -> (Option<LookupId>, io::Result<Answer>) {
    let payload = match c.outcome {
        Outcome::Message(payload) => payload,
        other => {
            let message = format!("not a lookup's completion: {other:?}");
            return (
                None,
                Err(io::Error::new(io::ErrorKind::InvalidInput, message)),
            );
        }
    };
    match payload.into_value::<LookupEnded>() {
        Ok(ended) => (Some(ended.id), ended.result),
        Err(wrong) => (None, Err(wrong.into())),
    }
}

/// A lookup's handle, to cancel it or give it a deadline; stale once it
/// has ended, for good (its slot's generation is 64 bits wide: it does not
/// come round again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupId {
    slot: u32,
    generation: u64,
}

/// The key of a task: the lookup's slot, and the exchange or whether it is
/// the lookup's deadline. It only says where to look: a completion is the
/// lookup's if its task is the one the lookup has in flight there, which
/// no stale task and no other resolver's task is.
const SLOT_MASK: u64 = u32::MAX as u64;
const EXCHANGE_SHIFT: u32 = 32;
const DEADLINE_TAG: u64 = 1 << 56;
/// Keys with this bit belong to [`crate::connect`], which shares the
/// resolver's context.
pub(crate) const FOREIGN_TAG: u64 = 1 << 63;

struct Lookup<S> {
    done: Ctx<S>,
    generation: u64,
    name: String,
    types: Vec<RecordType>,
    candidates: Vec<String>,
    candidate: usize,
    exchanges: Vec<Exchange<S>>,
    first_server: usize,
    deadline: Option<Task>,
    /// The most telling failure of the candidates so far.
    failure: Option<io::Error>,
}

/// An asynchronous stub resolver on a ring.
///
/// Every task it schedules carries the `ctx` it was made with (a callback
/// and message of the caller's choosing; the key is the resolver's);
/// the caller forwards each of their completions to
/// [`on_completion`](Resolver::on_completion). A lookup is started with a
/// `Ctx` of its own and ends with exactly one completion of it: a message
/// whose [`answer`] is the result (also when cancelled, `ECANCELED`, when
/// its deadline passed, `ETIME`, and when the resolver is dropped first,
/// `ECANCELED`).
///
/// Lookups and the resolver may be cancelled or dropped from any callback:
/// it holds no pointer into the ring and the ring none into it. A
/// completion is taken only if its task is one the resolver has in flight:
/// one of a lookup or try that has ended, or of another resolver (one
/// replaced on reconfiguration, whose completions the caller forwards to
/// its successor), is dropped (its socket closed with it). Dropping the
/// resolver sends its ring a message that cancels the tries and deadlines
/// of its lookups on the ring's next turn, so that nothing of it keeps the
/// ring busy; their sockets close with those completions.
pub struct Resolver<S> {
    config: Config,
    /// The file `config` comes from, if it is watched for changes.
    resolv_conf: Option<ResolvConfWatch>,
    hosts: Hosts,
    /// The file `hosts` comes from, if it is watched for changes.
    hosts_file: Option<HostsWatch>,
    ctx: Ctx<S>,
    handle: RingHandle<S>,
    lookups: Vec<Option<Lookup<S>>>,
    generations: Vec<u64>,
    free: Vec<u32>,
    next_first_server: usize,
}

impl<S> Resolver<S> {
    /// A resolver asking `config`'s servers after `hosts`; its tasks carry
    /// `ctx`. Fails if the ring's mailbox (which delivers answers) cannot
    /// be set up.
    pub fn new(
        ring: &mut Ring<S>,
        config: Config,
        hosts: Hosts,
        ctx: Ctx<S>,
    ) -> io::Result<Resolver<S>> {
        Ok(Resolver {
            config,
            resolv_conf: None,
            hosts,
            hosts_file: None,
            ctx,
            handle: ring.handle()?,
            lookups: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            next_first_server: 0,
        })
    }

    /// A resolver configured by the `resolv.conf` at `path` (read as
    /// [`Config::from_file`] reads it), read again when it changes: before
    /// a lookup starts, at most once per `every` of ring time (glibc looks
    /// before every lookup, Go at most every
    /// [`RELOAD_INTERVAL`](super::reload::RELOAD_INTERVAL)), the file's
    /// inode, size and modification time are compared with those it had
    /// when read. The new configuration applies to that lookup and those
    /// after it (and to the next tries of lookups under way). The file is
    /// read on the ring's thread, so only a regular file of at most
    /// [`MAX_RESOLV_CONF_BYTES`](super::config::MAX_RESOLV_CONF_BYTES) is
    /// read: a FIFO or a device is refused at once, a larger file from its
    /// size (and not looked at again until it changes). A file that cannot
    /// be read (or is refused) then keeps the configuration in use; a
    /// missing one gives the defaults. An `every` past the clock's range
    /// (`Duration::MAX`) reads the file once, never again. Fails if the
    /// file cannot be read at first.
    pub fn from_resolv_conf(
        ring: &mut Ring<S>,
        path: impl Into<PathBuf>,
        every: Duration,
        hosts: Hosts,
        ctx: Ctx<S>,
    ) -> io::Result<Resolver<S>> {
        let (watch, config) = FileWatch::start(path.into(), Config::from_file, every, ring.now())?;
        let mut resolver = Resolver::new(ring, config, hosts, ctx)?;
        resolver.resolv_conf = Some(watch);
        Ok(resolver)
    }

    /// A resolver configured by the `resolv.conf` at `resolv_conf` and the
    /// hosts file at `hosts`, both read again when they change, as
    /// [`from_resolv_conf`](Resolver::from_resolv_conf) reads its file
    /// again: before a lookup, at most once per `every` of ring time, each
    /// file's inode, size and modification time are compared with those
    /// it had when read. A hosts file that cannot be read (or is over
    /// [`MAX_HOSTS_BYTES`](super::config::MAX_HOSTS_BYTES)) then keeps the
    /// entries in use; a missing one has no entries (as
    /// [`Hosts::from_file`] reads it). Fails if either file cannot be read
    /// at first.
    pub fn from_files(
        ring: &mut Ring<S>,
        resolv_conf: impl Into<PathBuf>,
        hosts: impl Into<PathBuf>,
        every: Duration,
        ctx: Ctx<S>,
    ) -> io::Result<Resolver<S>> {
        let (watch, entries) = FileWatch::start(hosts.into(), Hosts::from_file, every, ring.now())?;
        let mut resolver = Resolver::from_resolv_conf(ring, resolv_conf, every, entries, ctx)?;
        resolver.hosts_file = Some(watch);
        Ok(resolver)
    }

    /// The configuration in use (as last read, for a resolver made with
    /// [`from_resolv_conf`](Resolver::from_resolv_conf)).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The hosts file entries in use (as last read, for a resolver made
    /// with [`from_files`](Resolver::from_files)).
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Looks up the addresses of `name`, A and AAAA at once (one after the
    /// other with `single-request`): a numeric name (see
    /// [`ip_literal`](super::literal::ip_literal): `1.2.3.4`, `127.1`,
    /// `::1`, `fe80::1%lo`, whose zone an [`Answer`] cannot carry) is its
    /// address with no query, an unknown zone `InvalidInput`; then the
    /// hosts file (any address there ends the lookup), `localhost`
    /// locally, then the servers along the search list. The answer holds
    /// both families in RFC 6724 order; none at all is `NotFound`. `name`
    /// is text as in a zone file: `\.` or `\046` puts a dot inside a label
    /// (the reply is matched label by label); a name that is not
    /// [well formed](super::search::is_well_formed) (`a..b`, `.localhost`,
    /// a backslash at its end, a space, a control character or non-ASCII
    /// text: an internationalised name goes in its `xn--` form) or too long
    /// for the wire is `InvalidInput`.
    pub fn lookup_ip(&mut self, ring: &mut Ring<S>, name: &str, done: Ctx<S>) -> LookupId {
        self.start(ring, name, &[RecordType::Aaaa, RecordType::A], false, done)
    }

    /// Looks up the records of one type for `name`. A and AAAA answer a
    /// numeric name and consult the hosts file and `localhost` first, as
    /// [`lookup_ip`](Resolver::lookup_ip) does, as glibc's lookup of one
    /// family does: a numeric name of the other family is `NotFound` with
    /// no query (but an A lookup of `::ffff:192.0.2.9` is `192.0.2.9`), and
    /// a name the hosts file lists with no address of the family (an
    /// IPv4-mapped one counting as IPv4 for A) is asked of the servers.
    /// Other types ask for a numeric name as for any name. An empty answer
    /// is `NotFound`.
    pub fn lookup(
        &mut self,
        ring: &mut Ring<S>,
        name: &str,
        qtype: RecordType,
        done: Ctx<S>,
    ) -> LookupId {
        self.start(ring, name, &[qtype], false, done)
    }

    /// A lookup of `qtype` (A or AAAA) for one half of a lookup of both
    /// families, as the connector makes them: a name the hosts file (or
    /// `localhost`) has any address for is answered from there, even with
    /// none of this family, as a lookup of both families is.
    pub(crate) fn lookup_half(
        &mut self,
        ring: &mut Ring<S>,
        name: &str,
        qtype: RecordType,
        done: Ctx<S>,
    ) -> LookupId {
        self.start(ring, name, &[qtype], true, done)
    }

    /// Cancels a lookup: its completion comes with `ECANCELED`. Returns
    /// false for a lookup that has ended (nothing is done).
    pub fn cancel(&mut self, ring: &mut Ring<S>, id: LookupId) -> bool {
        let canceled = ouro::canceled_error();
        self.finish(ring, id, Err(canceled))
    }

    /// Cancels every lookup (each completes with `ECANCELED`) and what they
    /// have in flight.
    pub fn cancel_all(&mut self, ring: &mut Ring<S>) {
        for slot in 0..self.lookups.len() as u32 {
            if let Some(generation) = self.lookups[slot as usize].as_ref().map(|l| l.generation) {
                self.cancel(ring, LookupId { slot, generation });
            }
        }
    }

    /// Gives a lookup a deadline: if it has not ended by `at`, it ends
    /// with `ETIME` (see [`ouro::is_deadline`]). Replaces an earlier one.
    /// `NotFound` for a lookup that has ended.
    pub fn set_deadline(
        &mut self,
        ring: &mut Ring<S>,
        id: LookupId,
        at: Instant,
    ) -> io::Result<()> {
        let ctx = self.ctx.key(DEADLINE_TAG | u64::from(id.slot));
        let lookup = self
            .live(id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if let Some(old) = lookup.deadline.take() {
            ring.cancel(old, Ctx::none());
        }
        let task = ring.timer(at.saturating_duration_since(ring.now()), ctx);
        if let Some(lookup) = self.live(id) {
            lookup.deadline = Some(task);
        }
        Ok(())
    }

    /// Whether the lookup is still going on.
    pub fn is_live(&self, id: LookupId) -> bool {
        self.lookups
            .get(id.slot as usize)
            .and_then(Option::as_ref)
            .is_some_and(|l| l.generation == id.generation)
    }

    /// Takes a completion of one of the resolver's tasks (those carrying
    /// its `ctx`). A completion of a task the resolver no longer has in
    /// flight (its lookup or try ended, or the task is another resolver's)
    /// is dropped.
    pub fn on_completion(&mut self, ring: &mut Ring<S>, c: Completion) -> io::Result<()> {
        let key = c.key();
        if key & FOREIGN_TAG != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a completion of the resolver's",
            ));
        }
        let slot = (key & SLOT_MASK) as usize;
        let Some(lookup) = self.lookups.get(slot).and_then(Option::as_ref) else {
            return Ok(());
        };
        let id = LookupId {
            slot: slot as u32,
            generation: lookup.generation,
        };
        if key & DEADLINE_TAG != 0 {
            let fired = matches!(c.outcome, Outcome::Timer(Ok(())));
            if fired && lookup.deadline == Some(c.task()) {
                self.finish(ring, id, Err(ouro::deadline_error()));
            }
            return Ok(());
        }
        let exchange = ((key >> EXCHANGE_SHIFT) & 0xff) as usize;
        self.on_exchange(ring, id, exchange, c);
        Ok(())
    }

    fn start(
        &mut self,
        ring: &mut Ring<S>,
        name: &str,
        types: &[RecordType],
        half: bool,
        done: Ctx<S>,
    ) -> LookupId {
        self.reload_if_changed(ring.now());
        let id = self.insert(done, name, types);
        if !is_well_formed(name) {
            self.finish(ring, id, Err(invalid_name(name)));
            return id;
        }
        if let Some(result) = local_answer(ring, &self.hosts, name, types, half) {
            self.finish(ring, id, result);
            return id;
        }
        let names = candidates(name, &self.config);
        if names.is_empty() {
            self.finish(ring, id, Err(invalid_name(name)));
            return id;
        }
        if let Some(lookup) = self.live(id) {
            lookup.candidates = names;
        }
        self.start_candidate(ring, id);
        id
    }

    /// The context its tasks carry.
    pub(crate) fn ctx(&self) -> Ctx<S> {
        self.ctx
    }

    fn reload_if_changed(&mut self, now: Instant) {
        if let Some(config) = self.resolv_conf.as_mut().and_then(|w| w.changed(now)) {
            self.config = config;
        }
        if let Some(hosts) = self.hosts_file.as_mut().and_then(|w| w.changed(now)) {
            self.hosts = hosts;
        }
    }

    fn insert(&mut self, done: Ctx<S>, name: &str, types: &[RecordType]) -> LookupId {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.lookups.push(None);
                self.generations.push(0);
                (self.lookups.len() - 1) as u32
            }
        };
        let generation = self.generations[slot as usize];
        let first_server = self.next_first_server;
        if self.config.rotate {
            self.next_first_server = self.next_first_server.wrapping_add(1);
        }
        self.lookups[slot as usize] = Some(Lookup {
            done,
            generation,
            name: name.to_string(),
            types: types.to_vec(),
            candidates: Vec::new(),
            candidate: 0,
            exchanges: Vec::new(),
            first_server,
            deadline: None,
            failure: None,
        });
        LookupId { slot, generation }
    }

    fn live(&mut self, id: LookupId) -> Option<&mut Lookup<S>> {
        self.lookups
            .get_mut(id.slot as usize)?
            .as_mut()
            .filter(|l| l.generation == id.generation)
    }

    fn plan(config: &Config, first: usize) -> Plan<'_> {
        Plan {
            servers: &config.nameservers,
            first,
            attempts: config.attempts,
            timeout: config.timeout,
            use_tcp: config.use_vc,
        }
    }

    /// Asks the servers for the lookup's current candidate name.
    fn start_candidate(&mut self, ring: &mut Ring<S>, id: LookupId) {
        let ctx = self.ctx;
        let single = self.config.single_request;
        let edns = self.config.edns0;
        let Some(lookup) = self.lookups[id.slot as usize].as_mut() else {
            return;
        };
        let Some(name) = lookup.candidates.get(lookup.candidate).cloned() else {
            return;
        };
        lookup.exchanges = (lookup.types.iter().enumerate())
            .map(|(i, t)| {
                let key = u64::from(id.slot) | ((i as u64) << EXCHANGE_SHIFT);
                Exchange::new(name.clone(), *t, ctx, key, edns)
            })
            .collect();
        let plan = Self::plan(&self.config, lookup.first_server);
        let starting = if single { 1 } else { lookup.exchanges.len() };
        for exchange in lookup.exchanges.iter_mut().take(starting) {
            exchange.next_try(ring, &plan);
        }
        self.after_progress(ring, id);
    }

    /// A completion for the lookup's exchange `index`: taken if it is of
    /// the task the exchange has in flight.
    fn on_exchange(&mut self, ring: &mut Ring<S>, id: LookupId, index: usize, c: Completion) {
        let Some(lookup) = self.lookups[id.slot as usize].as_mut() else {
            return;
        };
        let plan = Self::plan(&self.config, lookup.first_server);
        let task = c.task();
        let Some(exchange) = (lookup.exchanges.get_mut(index)).filter(|e| e.is_in_flight(task))
        else {
            return;
        };
        exchange.on_completion(ring, c.outcome, &plan);
        self.after_progress(ring, id);
    }

    /// After an exchange moved: start the one `single-request` held back,
    /// or, once all have ended, answer or go to the next candidate.
    fn after_progress(&mut self, ring: &mut Ring<S>, id: LookupId) {
        if !self.is_live(id) {
            return;
        }
        let Some(lookup) = self.lookups[id.slot as usize].as_mut() else {
            return;
        };
        if lookup
            .exchanges
            .iter()
            .any(|e| e.started && e.ended.is_none())
        {
            return;
        }
        let first_server = lookup.first_server;
        if let Some(waiting) = lookup.exchanges.iter_mut().find(|e| !e.started) {
            let plan = Self::plan(&self.config, first_server);
            waiting.next_try(ring, &plan);
            return self.after_progress(ring, id);
        }
        let records = lookup.take_records(ring);
        if let Some(answer) = records {
            self.finish(ring, id, Ok(answer));
            return;
        }
        lookup.candidate += 1;
        if lookup.candidate < lookup.candidates.len() {
            return self.start_candidate(ring, id);
        }
        let error = lookup
            .failure
            .take()
            .unwrap_or_else(|| not_found(&lookup.name));
        self.finish(ring, id, Err(error));
    }

    /// Ends a lookup: stops what it has in flight, frees its slot and sends
    /// the result to its `done` context. False if it had ended already.
    fn finish(&mut self, ring: &mut Ring<S>, id: LookupId, result: io::Result<Answer>) -> bool {
        if !self.is_live(id) {
            return false;
        }
        let Some(mut lookup) = self.lookups[id.slot as usize].take() else {
            return false;
        };
        for exchange in &mut lookup.exchanges {
            exchange.stop(ring);
        }
        if let Some(deadline) = lookup.deadline.take() {
            ring.cancel(deadline, Ctx::none());
        }
        self.release(id);
        // A closed mailbox means the ring is going away with its tasks.
        let ended = LookupEnded { id, result };
        let _ = self.handle.send(lookup.done, Payload::value(ended));
        true
    }

    fn release(&mut self, id: LookupId) {
        self.generations[id.slot as usize] += 1;
        self.free.push(id.slot);
    }
}

impl<S> Lookup<S> {
    /// The records of the candidate's exchanges, or `None` (the failure
    /// then kept for the final error) when none has any.
    fn take_records<T>(&mut self, ring: &mut Ring<T>) -> Option<Answer> {
        let mut canonical = None;
        let mut records = Vec::new();
        for exchange in &mut self.exchanges {
            match exchange.ended.take() {
                Some(Ended::Records {
                    canonical: name,
                    records: found,
                }) => {
                    canonical.get_or_insert(name);
                    records.extend(found);
                }
                Some(Ended::Failed(e)) => self.failure = Some(e),
                Some(Ended::NoData | Ended::NxDomain) | None => {}
            }
        }
        let name = presentation(&canonical?);
        sort_addresses(&mut records, ring);
        Some(Answer { name, records })
    }
}

/// Addresses in RFC 6724 order; other records stay as they came.
fn sort_addresses<T>(records: &mut [Record], ring: &mut Ring<T>) {
    let mut addrs: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match r {
            Record::A(v4) => Some(IpAddr::V4(*v4)),
            Record::Aaaa(v6) => Some(IpAddr::V6(*v6)),
            _ => None,
        })
        .collect();
    if addrs.len() != records.len() {
        return;
    }
    sort_destinations(&mut addrs, ring);
    for (record, addr) in records.iter_mut().zip(addrs) {
        *record = match addr {
            IpAddr::V4(v4) => Record::A(v4),
            IpAddr::V6(v6) => Record::Aaaa(v6),
        };
    }
}

/// Ends each lookup with `ECANCELED` and has the ring cancel what they
/// have in flight. Drop has no ring to cancel with, only the handle: the
/// cancels travel as a message, run on the ring's next turn (a ring that
/// is going away ends the tasks itself).
impl<S> Drop for Resolver<S> {
    fn drop(&mut self) {
        let mut in_flight = Vec::new();
        for (slot, lookup) in self.lookups.iter_mut().enumerate() {
            let Some(lookup) = lookup.take() else {
                continue;
            };
            in_flight.extend(lookup.deadline);
            in_flight.extend(lookup.exchanges.iter().filter_map(Exchange::in_flight));
            let id = LookupId {
                slot: slot as u32,
                generation: self.generations[slot],
            };
            let result = Err(ouro::canceled_error());
            let _ = self
                .handle
                .send(lookup.done, Payload::value(LookupEnded { id, result }));
        }
        if !in_flight.is_empty() {
            let cancel = Ctx::new(cancel_left_behind::<S>);
            let _ = self.handle.send(cancel, Payload::value(in_flight));
        }
    }
}

/// The message a dropped resolver (or connector) sends its ring: cancels
/// the tasks it carries (those that ended meanwhile are stale handles,
/// left alone).
pub(crate) fn cancel_left_behind<S>(
    _: &mut S,
    ring: &mut Ring<S>,
    c: Completion,
) -> io::Result<()> {
    let Outcome::Message(payload) = c.outcome else {
        return Ok(());
    };
    for task in payload.into_value::<Vec<Task>>()? {
        ring.cancel(task, Ctx::none());
    }
    Ok(())
}

fn invalid_name(name: &str) -> io::Error {
    let hint = if name.is_ascii() {
        ""
    } else {
        " (an internationalised name is looked up in its xn-- form)"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a name to look up: {name:?}{hint}"),
    )
}
