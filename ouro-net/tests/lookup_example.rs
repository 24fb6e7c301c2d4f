//! The `lookup` example: its command line (bad arguments are errors, not
//! panics), its `main` (run as `main` runs it, in a child process: help,
//! bad arguments, a closed or full stdout), and its lookups and printed
//! lines against the scripted server and, ignored unless dnsmasq is
//! installed, against dnsmasq beside `dig +short`.

mod support;

// How ouro's example tests run an example's `main` in a child process.
#[path = "../../ouro/tests/example_mains/child.rs"]
mod child;
#[path = "../../ouro/tests/example_mains/stdout.rs"]
mod stdout;

use std::net::{Ipv4Addr, SocketAddr};

use ouro_net::dns::{Config, Hosts, RecordType};
use simple_dns::RCODE;
use support::dnsmasq::Dnsmasq;
use support::*;

use child::{Ran, Stdout};

#[allow(dead_code)] // its `main`
#[path = "../examples/lookup.rs"]
mod lookup;

use lookup::Request;

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn parse(words: &[&str]) -> Result<Request, String> {
    Request::parse(&args(words))
}

#[test]
fn the_command_line_gives_server_name_and_type() {
    let request = parse(&["@127.0.0.1:5353", "example.test", "mx"]).unwrap();
    assert_eq!(request.server, Some("127.0.0.1:5353".parse().unwrap()));
    assert_eq!(request.name, "example.test");
    assert_eq!(request.qtype, Some(RecordType::Mx));
    let request = parse(&["@::1", "example.test"]).unwrap();
    assert_eq!(request.server, Some("[::1]:53".parse().unwrap()));
    assert_eq!(request.qtype, None);
    assert_eq!(
        parse(&["@[::1]:54", "x", "AAAA"]).unwrap().server,
        Some("[::1]:54".parse().unwrap())
    );
    let request = parse(&["example.test"]).unwrap();
    assert_eq!(request.server, None);
}

#[test]
fn bad_command_lines_are_errors() {
    for words in [
        &[][..],
        &["@"],
        &["@127.0.0.1"],
        &["@300.0.0.1", "x"],
        &["@localhost", "x"],
        &["x", "PTR"],
        &["x", "A", "more"],
    ] {
        assert!(parse(words).is_err(), "{words:?} was accepted");
    }
}

#[test]
fn a_server_on_the_command_line_is_the_only_one_asked() {
    let request = parse(&["@192.0.2.1:5300", "x"]).unwrap();
    let (config, hosts) = request.setup().unwrap();
    assert_eq!(
        config.nameservers,
        vec![SocketAddr::from(([192, 0, 2, 1], 5300))]
    );
    assert_eq!(hosts, Hosts::default());
}

fn scripted() -> ScriptedServer {
    ScriptedServer::start(
        Box::new(|_, query| {
            // No AAAA: the alias's answer leaves its target out, and the
            // target, asked for then, has none.
            let answer = if asks_aaaa(query) {
                let alias = asked_name(query) != "real.example.test";
                reply(query, RCODE::NoError, |p, name| {
                    if alias {
                        p.answers.push(cname_record(name, "real.example.test"));
                    }
                })
            } else if asked_name(query) == "txt.example.test" {
                reply(query, RCODE::NoError, |p, name| {
                    p.answers.push(txt_record(name, "v=one two"));
                })
            } else {
                reply(query, RCODE::NoError, |p, name| {
                    p.answers.push(cname_record(name, "real.example.test"));
                    let real = simple_dns::Name::new_unchecked("real.example.test");
                    p.answers
                        .push(a_record(&real.into_owned(), [192, 0, 2, 7].into()));
                })
            };
            vec![Send::Reply(answer)]
        }),
        None,
    )
}

fn run(server: SocketAddr, words: &[&str]) -> std::io::Result<Vec<String>> {
    let mut line = vec![format!("@{server}")];
    line.extend(args(words));
    let request = Request::parse(&line).unwrap();
    let (config, hosts) = request.setup().unwrap();
    let config = Config {
        timeout: std::time::Duration::from_millis(500),
        ..config
    };
    let answer = lookup::lookup(&request, config, hosts)?;
    Ok(lookup::lines(&request.name, &answer))
}

#[test]
fn an_alias_prints_its_canonical_name_then_its_addresses() {
    let server = scripted();
    let lines = run(server.addr, &["www.example.test"]).unwrap();
    assert_eq!(lines, vec!["real.example.test.", "192.0.2.7"]);
    let lines = run(server.addr, &["www.example.test.", "a"]).unwrap();
    assert_eq!(lines, vec!["real.example.test.", "192.0.2.7"]);
}

#[test]
fn a_txt_record_prints_as_one_quoted_string() {
    let server = scripted();
    let lines = run(server.addr, &["txt.example.test", "TXT"]).unwrap();
    assert_eq!(lines, vec!["\"v=one two\""]);
}

#[test]
fn a_name_without_records_of_the_type_is_not_found() {
    let server = scripted();
    let err = run(server.addr, &["www.example.test", "AAAA"]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
}

#[test]
#[ignore = "needs dnsmasq"]
fn its_lines_are_digs_against_dnsmasq() {
    let dnsmasq = Dnsmasq::start();
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, dnsmasq.port));
    for (name, qtype) in [
        ("alias.ouro.test", RecordType::A),
        ("web.ouro.test", RecordType::Aaaa),
        ("alias.ouro.test", RecordType::Cname),
        ("ouro.test", RecordType::Mx),
        ("_http._tcp.ouro.test", RecordType::Srv),
    ] {
        let type_name = support::dnsmasq::type_name(qtype);
        let mut ours = run(server, &[name, type_name]).unwrap();
        let mut digs = dnsmasq.dig(name, qtype, false);
        ours.sort();
        digs.sort();
        assert_eq!(ours, digs, "{name} {type_name}");
    }
}

/// Stands for the scripted server's address in a child's arguments: the
/// server runs in the child, which is where the lookup is made.
const SCRIPTED: &str = "@scripted";

/// The child: runs `lookup`'s `main` on the arguments the parent gave.
#[test]
#[ignore = "run in a child process by the tests of lookup's main"]
fn lookup_main() {
    let Some(asked) = child::asked() else {
        return;
    };
    let server = scripted();
    let args = asked.args.into_iter().map(|arg| match arg.as_str() {
        SCRIPTED => format!("@{}", server.addr),
        _ => arg,
    });
    stdout::redirect(asked.stdout);
    let status = lookup::cli::status(lookup::main_with(args));
    std::process::exit(status.into());
}

fn run_main(args: &[&str], stdout: Stdout) -> Ran {
    child::run("lookup_main", "lookup", args, stdout)
}

#[test]
fn help_prints_the_usage_and_exits_0() {
    for flag in ["--help", "-h"] {
        run_main(&[flag], Stdout::Piped)
            .assert_exit(0)
            .assert_stdout_has("usage: lookup ");
    }
}

#[test]
fn bad_command_lines_name_the_problem_with_the_usage_and_exit_2() {
    for (args, problem) in [
        (&["--bogus"][..], "unknown argument --bogus"),
        (&[], "no name to look up"),
        (
            &["x", "PTR"],
            "not a record type this resolver asks: \"PTR\"",
        ),
    ] {
        let ran = run_main(args, Stdout::Piped);
        ran.assert_exit(2)
            .assert_stderr_has(&format!("error: {problem}\nusage: lookup "));
    }
}

#[test]
fn an_answer_goes_to_stdout_and_a_failed_lookup_is_one_line_with_1() {
    run_main(&[SCRIPTED, "www.example.test"], Stdout::Piped)
        .assert_exit(0)
        .assert_stdout_has("real.example.test.\n192.0.2.7\n");
    let ran = run_main(&[SCRIPTED, "www.example.test", "AAAA"], Stdout::Piped);
    ran.assert_exit(1)
        .assert_stderr_has("error: www.example.test: ");
    assert_eq!(ran.errors().len(), 1, "{ran}");
}

/// `lookup NAME | head -0`: the answer has nowhere to go, and that is
/// no error.
#[test]
fn a_closed_stdout_ends_it_quietly_with_0() {
    let ran = run_main(&[SCRIPTED, "www.example.test"], Stdout::Closed);
    ran.assert_exit(0);
    assert!(ran.errors().is_empty(), "{ran}");
}

#[test]
fn a_full_stdout_is_one_error_line_and_exits_1() {
    let ran = run_main(&[SCRIPTED, "www.example.test"], Stdout::Full);
    ran.assert_exit(1)
        .assert_stderr_has("error: cannot write to stdout: No space left on device");
    assert_eq!(ran.errors().len(), 1, "{ran}");
}
