//! A real DNS server for the tests: `dnsmasq`, started on 127.0.0.1 and a
//! free port with the records of [`RECORDS`] given on its command line, and
//! `dig` asking it the same questions the resolver asks.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ouro_net::dns::{Config, Record, RecordType};

/// The zone every test server holds (`--local` makes it answer NXDOMAIN
/// for any other name in it, instead of REFUSED).
pub const ZONE: &str = "ouro.test";

/// The records, as dnsmasq options.
pub const RECORDS: &[&str] = &[
    "--host-record=web.ouro.test,192.0.2.10,2001:db8::10",
    "--host-record=multi.ouro.test,192.0.2.21",
    "--host-record=multi.ouro.test,192.0.2.22",
    "--host-record=multi.ouro.test,192.0.2.23",
    "--host-record=v6only.ouro.test,2001:db8::6",
    "--host-record=loop4.ouro.test,127.0.0.1",
    "--host-record=loopboth.ouro.test,127.0.0.1,::1",
    "--cname=alias.ouro.test,web.ouro.test",
    "--cname=chain.ouro.test,alias.ouro.test",
    "--srv-host=_http._tcp.ouro.test,web.ouro.test,8080,10,5",
    "--srv-host=_http._tcp.ouro.test,multi.ouro.test,8081,20,1",
    "--txt-record=txt.ouro.test,hello world,second string",
    "--mx-host=ouro.test,mail.ouro.test,20",
    "--mx-host=ouro.test,backup.ouro.test,30",
];

/// A running dnsmasq, killed when dropped.
pub struct Dnsmasq {
    child: Child,
    pub port: u16,
}

/// The dnsmasq program: on the PATH, or in /usr/sbin (where Debian puts
/// it, off an ordinary user's PATH).
fn program() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/dnsmasq");
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("dnsmasq"))
        .find(|p| p.is_file());
    on_path.unwrap_or(sbin)
}

/// A port free for both UDP and TCP on 127.0.0.1 (just now: dnsmasq may
/// lose it to another test, and is then started again on another).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

impl Dnsmasq {
    /// Starts dnsmasq with [`RECORDS`] and waits until it listens.
    /// `--no-daemon` keeps it in the foreground, writing no pid file and
    /// keeping the user it was started as (root or not: the port is not
    /// privileged); no upstream, no hosts file, no configuration file.
    pub fn start() -> Dnsmasq {
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(program())
                .args([
                    "--no-daemon",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                    "--log-facility=-",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--local=/{ZONE}/"))
                .args(RECORDS)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq (apt-get install dnsmasq-base)");
            let mut server = Dnsmasq { child, port };
            if server.wait_listening() {
                return server;
            }
        }
        panic!("dnsmasq did not start on any of 5 free ports");
    }

    /// Whether it listens (false if it exited: its port was taken).
    fn wait_listening(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("dnsmasq never listened on port {}", self.port);
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// A configuration asking this server only.
    pub fn config(&self) -> Config {
        Config {
            nameservers: vec![self.addr()],
            timeout: Duration::from_secs(2),
            attempts: 2,
            ..Config::default()
        }
    }

    /// `dig @127.0.0.1 -p PORT +short NAME TYPE` (over TCP with `tcp`): its
    /// lines.
    pub fn dig(&self, name: &str, qtype: RecordType, tcp: bool) -> Vec<String> {
        let mut dig = Command::new("dig");
        dig.arg("@127.0.0.1")
            .args(["-p", &self.port.to_string()])
            .args(["+short", "+tries=2", "+time=2"])
            .args([name, type_name(qtype)]);
        if tcp {
            dig.arg("+tcp");
        }
        let out = dig.output().expect("dig (apt-get install dnsutils)");
        assert!(out.status.success(), "dig failed: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// dig's status line word for the question (`NOERROR`, `NXDOMAIN`...).
    pub fn dig_status(&self, name: &str, qtype: RecordType) -> String {
        let out = Command::new("dig")
            .arg("@127.0.0.1")
            .args(["-p", &self.port.to_string()])
            .args([name, type_name(qtype)])
            .output()
            .expect("dig (apt-get install dnsutils)");
        let text = String::from_utf8(out.stdout).unwrap();
        let status = text
            .split("status: ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("no status in dig's output: {text}"));
        status.to_string()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn type_name(qtype: RecordType) -> &'static str {
    match qtype {
        RecordType::A => "A",
        RecordType::Aaaa => "AAAA",
        RecordType::Cname => "CNAME",
        RecordType::Srv => "SRV",
        RecordType::Txt => "TXT",
        RecordType::Mx => "MX",
    }
}

/// A record as `dig +short` prints it, except TXT: its strings joined, as
/// the resolver joins them (see [`dig_txt`]).
pub fn short_form(record: &Record) -> String {
    match record {
        Record::Txt(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A TXT line of `dig +short` (`"a b" "c"`) with its strings joined.
pub fn dig_txt(line: &str) -> String {
    line.split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat()
}
