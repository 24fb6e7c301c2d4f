//! A `dig`-like lookup through ouro's resolver:
//!
//! ```text
//! cargo run -p ouro-net --example lookup -- [@server[:port]] NAME [TYPE]
//! ```
//!
//! TYPE is one of A, AAAA, CNAME, SRV, TXT, MX (any case); without it,
//! both address families are looked up at once. Without a server, the
//! system's `/etc/resolv.conf` and `/etc/hosts` are used; with one, only
//! that server is asked (as `dig @server` does). The records are printed
//! one a line as `dig +short` prints them (a TXT record as one quoted
//! string, its strings joined), after the canonical name when it is not
//! the name asked for. A name without records, or a failed lookup, prints
//! the error and exits with 1; bad arguments exit with 2, `--help` with 0;
//! a closed stdout ends it quietly (ouro's `examples/support/cli.rs`, which
//! all the examples share).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

#[path = "../../ouro/examples/support/cli.rs"]
pub mod cli;

use ouro::{Completion, Ctx, Ring, RunMode};
use ouro_net::dns::config::DNS_PORT;
use ouro_net::dns::{answer, Answer, Config, Hosts, Record, RecordType, Resolver};

const USAGE: &str = "usage: lookup [@server[:port]] NAME [A|AAAA|CNAME|SRV|TXT|MX]";

/// What the command line asks.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The server to ask instead of the system's.
    pub server: Option<SocketAddr>,
    /// The name to look up.
    pub name: String,
    /// The record type; `None` for both address families.
    pub qtype: Option<RecordType>,
}

impl Request {
    /// The request in the arguments (the program's name left out).
    pub fn parse(args: &[String]) -> Result<Request, String> {
        let mut args = args.iter().map(String::as_str).peekable();
        let server = match args.next_if(|a| a.starts_with('@')) {
            Some(at) => Some(parse_server(&at[1..])?),
            None => None,
        };
        let name = args.next().ok_or("no name to look up")?.to_string();
        if name.starts_with('-') {
            return Err(format!("unknown argument {name}"));
        }
        let qtype = args.next().map(parse_type).transpose()?;
        if let Some(extra) = args.next() {
            return Err(format!("unexpected argument {extra:?}"));
        }
        Ok(Request {
            server,
            name,
            qtype,
        })
    }

    /// The configuration and hosts it uses: only its server if it names
    /// one, the system's files otherwise.
    pub fn setup(&self) -> io::Result<(Config, Hosts)> {
        match self.server {
            Some(server) => Ok((
                Config {
                    nameservers: vec![server],
                    ..Config::default()
                },
                Hosts::default(),
            )),
            None => Ok((
                Config::from_file(Path::new("/etc/resolv.conf"))?,
                Hosts::from_file(Path::new("/etc/hosts"))?,
            )),
        }
    }
}

/// `127.0.0.1`, `127.0.0.1:5353`, `::1` or `[::1]:5353`.
fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, DNS_PORT)),
        Err(_) => Err(format!("not a server address: {text:?}")),
    }
}

fn parse_type(text: &str) -> Result<RecordType, String> {
    Ok(match text.to_ascii_uppercase().as_str() {
        "A" => RecordType::A,
        "AAAA" => RecordType::Aaaa,
        "CNAME" => RecordType::Cname,
        "SRV" => RecordType::Srv,
        "TXT" => RecordType::Txt,
        "MX" => RecordType::Mx,
        _ => return Err(format!("not a record type this resolver asks: {text:?}")),
    })
}

struct State {
    resolver: Option<Resolver<State>>,
    answer: Option<io::Result<Answer>>,
}

fn to_resolver(state: &mut State, ring: &mut Ring<State>, c: Completion) -> io::Result<()> {
    match state.resolver.as_mut() {
        Some(resolver) => resolver.on_completion(ring, c),
        None => Ok(()),
    }
}

fn on_answer(state: &mut State, _: &mut Ring<State>, c: Completion) -> io::Result<()> {
    state.answer = Some(answer(c));
    Ok(())
}

/// Runs the lookup on a ring of its own to its one answer.
pub fn lookup(request: &Request, config: Config, hosts: Hosts) -> io::Result<Answer> {
    let mut ring = Ring::new(16)?;
    let resolver = Resolver::new(&mut ring, config, hosts, Ctx::new(to_resolver))?;
    let mut state = State {
        resolver: Some(resolver),
        answer: None,
    };
    let resolver = state.resolver.as_mut().expect("just set");
    let done = Ctx::new(on_answer);
    match request.qtype {
        Some(qtype) => resolver.lookup(&mut ring, &request.name, qtype, done),
        None => resolver.lookup_ip(&mut ring, &request.name, done),
    };
    ring.run(&mut state, RunMode::UntilDone)?;
    state
        .answer
        .unwrap_or_else(|| Err(io::Error::other("the lookup ended without an answer")))
}

/// The lines printed for an answer to `asked`.
pub fn lines(asked: &str, answer: &Answer) -> Vec<String> {
    let asked = asked.trim_end_matches('.');
    let renamed = !answer.name.eq_ignore_ascii_case(asked);
    let canonical = renamed.then(|| format!("{}.", answer.name));
    canonical
        .into_iter()
        .chain(answer.records.iter().map(Record::to_string))
        .collect()
}

/// What `main` does, given the command line's arguments (after the
/// program's name).
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    let mut args = cli::Args::new(args, USAGE);
    let mut words = Vec::new();
    while let Some(word) = args.next_arg()? {
        words.push(word);
    }
    let request = Request::parse(&words).map_err(|problem| args.bad(problem))?;
    let answer = request
        .setup()
        .and_then(|(config, hosts)| lookup(&request, config, hosts))
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", request.name)))?;
    for line in lines(&request.name, &answer) {
        cli::line(format_args!("{line}"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    cli::main(USAGE, main_with)
}
