//! Genuine Apache Kafka (4.x, KRaft) for the tests: one broker on 127.0.0.1, started through
//! `scripts/kafka-broker.sh` from the jars `scripts/setup.sh` resolved from Maven Central, with the machine's
//! JDK. Stopped (SIGKILL) when dropped; restartable over the same data, which is a real broker restart.
//!
//! Retention is checked every second, so a topic created with a short `retention.ms` and `segment.ms` really
//! loses its oldest segments while a test waits; `delete_records_before` moves the earliest offset at once.
//! A missing JDK or jar is an error naming what to run, never a skipped test.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ec_kafka::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum KafkaBrokerError {
    #[error("kafka broker: {0}")]
    Io(#[from] std::io::Error),
    #[error("kafka broker did not listen on {addr} within {secs}s; its log:\n{log}")]
    NotListening { addr: String, secs: u64, log: String },
    #[error("kafka broker exited before listening ({status}); its log:\n{log}")]
    Exited { status: std::process::ExitStatus, log: String },
    #[error("kafka admin: {0}")]
    Admin(#[from] ec_kafka::KafkaIoError),
}

/// The script that runs a broker: the same one the local cluster and the image test use.
pub fn broker_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka-broker.sh")
}

/// A single-node Apache Kafka cluster on 127.0.0.1.
pub struct KafkaBroker {
    dir: tempfile::TempDir,
    port: u16,
    controller_port: u16,
    props: Vec<String>,
    child: Option<Child>,
}

impl KafkaBroker {
    /// Starts a broker with the script's defaults.
    pub fn start() -> Result<Self, KafkaBrokerError> {
        Self::start_with(&[])
    }

    /// Starts a broker with extra server properties (`key=value`).
    pub fn start_with(props: &[&str]) -> Result<Self, KafkaBrokerError> {
        let mut broker = KafkaBroker {
            dir: tempfile::tempdir()?,
            port: crate::free_port()?,
            controller_port: crate::free_port()?,
            props: props.iter().map(|p| p.to_string()).collect(),
            child: None,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// Starts a broker with a second listener, SASL_PLAINTEXT with OAUTHBEARER, validated by Kafka's
    /// built-in unsecured JWT validator (an unsigned JWT with a subject and an unexpired `exp` passes): the
    /// OAUTHBEARER client path of MSK IAM, without AWS. Returns the broker and that listener's address.
    pub fn start_with_oauthbearer() -> Result<(Self, String), KafkaBrokerError> {
        Self::start_sasl(&[])
    }

    /// [`KafkaBroker::start_with_oauthbearer`] with Kafka's standard ACL authorizer: a client signed in over
    /// OAUTHBEARER (`User:<its token's subject>`) may do only what an ACL allows it. The PLAINTEXT listener's
    /// clients (`User:ANONYMOUS`, the harness itself: topics, ACLs, reading the log back) are super users.
    pub fn start_with_acls() -> Result<(Self, String), KafkaBrokerError> {
        Self::start_sasl(&[
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_string(),
            "super.users=User:ANONYMOUS".to_string(),
        ])
    }

    fn start_sasl(extra: &[String]) -> Result<(Self, String), KafkaBrokerError> {
        let (port, controller_port, sasl) = (crate::free_port()?, crate::free_port()?, crate::free_port()?);
        let mut props = vec![
            format!(
                "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},\
                 SASL_PLAINTEXT://127.0.0.1:{sasl}"
            ),
            format!("advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl}"),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
                .to_string(),
            "sasl.enabled.mechanisms=OAUTHBEARER".to_string(),
            "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config=\
             org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
                .to_string(),
        ];
        props.extend_from_slice(extra);
        let mut broker = KafkaBroker { dir: tempfile::tempdir()?, port, controller_port, props, child: None };
        broker.spawn()?;
        let addr = format!("127.0.0.1:{sasl}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                return Err(KafkaBrokerError::NotListening { addr, secs: 30, log: broker.log() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok((broker, addr))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// The broker's own log (warnings and start-up), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<(), KafkaBrokerError> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let child = Command::new("bash")
            .arg(broker_script())
            .arg(self.dir.path().join("broker"))
            .arg(self.port.to_string())
            .arg(self.controller_port.to_string())
            .args(&self.props)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        self.child = Some(child);
        // A JVM start on a busy 2-core machine takes 5-15 s.
        let secs = 90;
        let addr = self.bootstrap_servers();
        let deadline = Instant::now() + Duration::from_secs(secs);
        while TcpStream::connect(&addr).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(KafkaBrokerError::Exited { status, log: self.log() });
            }
            if Instant::now() > deadline {
                return Err(KafkaBrokerError::NotListening { addr, secs, log: self.log() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Kills the broker process (SIGKILL: an unclean stop, as a crash or a lost machine).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again over the same data and ports.
    pub fn start_again(&mut self) -> Result<(), KafkaBrokerError> {
        self.stop();
        self.spawn()
    }

    /// Stops and starts the broker over the same data.
    pub fn restart(&mut self) -> Result<(), KafkaBrokerError> {
        self.start_again()
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs an admin future to completion on a thread of its own, so that both plain and async tests (whose
    /// runtime must not be blocked from inside) can call the blocking helpers below.
    fn block_on<T: Send>(
        fut: impl std::future::Future<Output = Result<T, ec_kafka::KafkaIoError>> + Send,
    ) -> Result<T, KafkaBrokerError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Ok(rt.block_on(fut)?)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Creates a one-partition topic with `key=value` configs (e.g. `retention.ms=3000`). Retried for a
    /// while: a broker that has just opened its port may not yet serve metadata.
    pub fn create_topic(&self, topic: &str, configs: &[&str]) -> Result<(), KafkaBrokerError> {
        let pairs: Vec<(&str, &str)> = configs.iter().filter_map(|c| c.split_once('=')).collect();
        let cfg = KafkaConfig::plaintext(self.bootstrap_servers());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match Self::block_on(ec_kafka::admin::create_topic(&cfg, topic, Some(1), &pairs)) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// Deletes the records below `offset` (Kafka's DeleteRecords); returns the new earliest offset.
    pub fn delete_records_before(&self, topic: &str, offset: i64) -> Result<i64, KafkaBrokerError> {
        let cfg = KafkaConfig::plaintext(self.bootstrap_servers());
        Self::block_on(ec_kafka::admin::delete_records_before(&cfg, topic, offset))
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
