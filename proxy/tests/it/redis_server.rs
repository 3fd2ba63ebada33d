//! A real `redis-server` for the tests, on a free port of 127.0.0.1, without persistence
//! (`scripts/setup-system.sh` installs it; the tests fail, not skip, without it). It can be
//! killed and started again on the same port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// TLS only (`--tls-port`), with this directory holding the CA and the server's certificate.
    tls: Option<tempfile::TempDir>,
    password: Option<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            child: None,
            tls: None,
            password: None,
        };
        server.restart();
        server
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 signed by a fresh CA
    /// (`ca_file`), and that wants `password`.
    pub fn start_tls(password: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        write_certificates(dir.path());
        let mut server = Self {
            port,
            child: None,
            tls: Some(dir),
            password: Some(password.to_owned()),
        };
        server.restart();
        server
    }

    /// The CA a client must trust to reach a TLS server.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.tls
            .as_ref()
            .expect("not a TLS server")
            .path()
            .join("ca.pem")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .map(str::to_owned)
            .to_vec();
        match &self.tls {
            None => args.extend(["--port".to_owned(), port]),
            Some(dir) => {
                let file = |name: &str| dir.path().join(name).display().to_string();
                args.extend([
                    "--port".to_owned(),
                    "0".to_owned(),
                    "--tls-port".to_owned(),
                    port,
                    "--tls-cert-file".to_owned(),
                    file("server.pem"),
                    "--tls-key-file".to_owned(),
                    file("server.key"),
                    "--tls-ca-cert-file".to_owned(),
                    file("ca.pem"),
                    "--tls-auth-clients".to_owned(),
                    "no".to_owned(),
                ]);
            }
        }
        if let Some(password) = &self.password {
            args.extend(["--requirepass".to_owned(), password.clone()]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run scripts/setup-system.sh");
        self.child = Some(child);
        let give_up = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < give_up, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server without closing its connections (SIGSTOP): Redis is there, but slow.
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let child = self.child.as_ref().expect("not running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Whether the server takes connections (PING without TLS; a TCP connect with it).
    fn answers(&self) -> bool {
        match &self.tls {
            None => self.ping().is_ok(),
            Some(_) => std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
        }
    }

    fn ping(&self) -> redis::RedisResult<String> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_millis(200))?;
        redis::cmd("PING").query(&mut connection)
    }

    /// How many clients are connected (`INFO clients`), this question's own connection not
    /// counted.
    pub fn clients(&self) -> Option<u64> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut connection)
            .ok()?;
        let count = info
            .lines()
            .find_map(|line| line.strip_prefix("connected_clients:"))?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(count.saturating_sub(1))
    }

    /// `SCRIPT FLUSH`: Redis forgets every loaded script (as after a failover to a replica
    /// that never had them).
    pub fn flush_scripts(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .unwrap();
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query::<()>(&mut connection)
            .unwrap();
    }

    /// A `MONITOR` connection: every command Redis runs from now on, with the client that sent
    /// it, read in the background ([`Monitor::commands`]).
    pub fn monitor(&self) -> Monitor {
        use std::io::{BufRead, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(b"MONITOR\r\n").unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut ok = String::new();
        reader.read_line(&mut ok).unwrap();
        assert_eq!(ok, "+OK\r\n");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = lines.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                into.lock().unwrap().push(line);
            }
        });
        Monitor { stream, lines }
    }

    /// `ECHO word`: a mark in a [`Monitor`]'s stream ([`Monitor::saw`]).
    pub fn echo(&self, word: &str) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .unwrap();
        redis::cmd("ECHO")
            .arg(word)
            .query::<String>(&mut connection)
            .unwrap();
    }

    /// `HGET key c` of a window counter (None when the key is not there).
    pub fn committed(&self, key: &str) -> Option<u64> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        redis::cmd("HGET")
            .arg(key)
            .arg("c")
            .query::<Option<u64>>(&mut connection)
            .ok()
            .flatten()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `ca.pem`, and `server.pem`/`server.key` for 127.0.0.1 signed by it, into `dir`.
fn write_certificates(dir: &std::path::Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let mut ca_params = CertificateParams::default();
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "limit tests Redis CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut server_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    server_params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server = server_params.signed_by(&server_key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
}

/// [`RedisServer::monitor`]'s connection; closed when dropped.
pub struct Monitor {
    stream: std::net::TcpStream,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Monitor {
    /// Whether the stream has been read up to [`RedisServer::echo`] of `word` (Redis feeds a
    /// monitor in the order it runs commands: everything before the mark has been read too).
    pub fn saw(&self, word: &str) -> bool {
        let mark = format!("\"ECHO\" \"{word}\"");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.ends_with(&mark))
    }

    /// The commands sent by clients so far (not those a script ran), in order: the client's
    /// address and the command's words (`MONITOR`'s line `<time> [<db> <addr>] "<word>" ...`).
    pub fn commands(&self) -> Vec<(String, Vec<String>)> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|line| {
                let (_, rest) = line.split_once(" [")?;
                let (client, words) = rest.split_once("] ")?;
                let (_, addr) = client.split_once(' ')?;
                if addr == "lua" {
                    return None;
                }
                let words = words
                    .split("\" \"")
                    .map(|w| w.trim_matches('"').to_owned())
                    .collect();
                Some((addr.to_owned(), words))
            })
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
