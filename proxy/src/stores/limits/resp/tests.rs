//! The connection against a real redis-server (`scripts/setup-system.sh` installs it).

use super::*;
/// The integration tests' redis-server (a free port of 127.0.0.1, stopped when dropped).
#[allow(dead_code)]
#[path = "../../../../tests/it/redis_server.rs"]
mod redis_server;

use redis_server::RedisServer as Server;

/// The connection's target: `server`, in database 2 (`SELECT` from the URL).
fn target(server: &Server) -> Target {
    let client = redis::Client::open(format!("{}/2", server.url())).unwrap();
    Target::of(client.get_connection_info()).unwrap()
}

/// A deadline no test reaches.
fn far() -> Instant {
    Instant::now() + std::time::Duration::from_secs(3600)
}

fn echo(word: &str) -> redis::Cmd {
    redis::cmd("ECHO").arg(word).clone()
}

/// Many calls of one thread in flight on one connection, one of them dropped before its
/// answer: each gets its own answer, and the one after the dropped one still comes.
#[tokio::test(flavor = "current_thread")]
async fn calls_in_flight_together_each_get_their_own_answer() {
    let server = Server::start();
    let connection = Connection::open(&target(&server)).await.unwrap();
    let calls = (0..50).map(|i| {
        let connection = connection.clone();
        tokio::spawn(async move {
            let word = format!("w{i}");
            let answer = connection.call(&echo(&word), far()).await.unwrap();
            assert_eq!(answer, Reply::Bulk(Some(word.into_bytes())));
        })
    });
    let calls: Vec<_> = calls.collect();
    // Dropped at once: polled once (its command went), then gone before its answer.
    let word = echo("dropped");
    let mut dropped = Box::pin(connection.call(&word, far()));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(dropped.as_mut().poll(&mut cx).is_pending());
    drop(dropped);
    let after = connection.call(&echo("after"), far()).await.unwrap();
    assert_eq!(after, Reply::Bulk(Some(b"after".to_vec())));
    for call in calls {
        call.await.unwrap();
    }
    // SELECT 2 from the URL: the connection counts in database 2.
    let set = redis::cmd("SET").arg("k").arg("v").clone();
    assert_eq!(
        connection.call(&set, far()).await.unwrap(),
        Reply::Simple("OK".into())
    );
    let info = connection
        .call(redis::cmd("CLIENT").arg("INFO"), far())
        .await;
    let Ok(Reply::Bulk(Some(info))) = info else {
        panic!("CLIENT INFO: {info:?}");
    };
    let info = String::from_utf8_lossy(&info);
    assert!(info.contains(" db=2 "), "{info}");
    assert!(!connection.is_broken());
}

/// The call that read last for the others is dropped before the answers come: the one
/// still waiting is woken to read for itself (readiness would wake only the dropped one).
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_reader_hands_the_reading_over() {
    let server = Server::start();
    let connection = Connection::open(&target(&server)).await.unwrap();
    let waiting = tokio::spawn({
        let connection = connection.clone();
        async move {
            let blpop = redis::cmd("BLPOP").arg("handover").arg(0).clone();
            connection.call(&blpop, far()).await
        }
    });
    // It runs: its BLPOP goes, it waits to read.
    tokio::task::yield_now().await;
    // Another call polled after it (its waker now the one readiness keeps), then dropped.
    let word = echo("later");
    let mut later = Box::pin(connection.call(&word, far()));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(later.as_mut().poll(&mut cx).is_pending());
    drop(later);
    let pusher = Connection::open(&target(&server)).await.unwrap();
    let push = redis::cmd("RPUSH").arg("handover").arg("x").clone();
    assert_eq!(pusher.call(&push, far()).await.unwrap(), Reply::Int(1));
    // A guard against a hang, not a measurement: the answer is already on its way.
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await;
    let answer = answer
        .expect("the waiting call was never woken")
        .unwrap()
        .unwrap();
    let expected = [&b"handover"[..], b"x"].map(|b| Reply::Bulk(Some(b.to_vec())));
    assert_eq!(answer, Reply::Array(Some(expected.to_vec())));
}

/// A call past its deadline ends with `Timeout`; its answer, when it comes, is thrown away
/// and the next call still gets its own.
#[tokio::test(flavor = "current_thread")]
async fn a_call_past_its_deadline_times_out_and_the_next_gets_its_own_answer() {
    let server = Server::start();
    let connection = Connection::open(&target(&server)).await.unwrap();
    // Answered only once something is pushed: after the deadline, whatever the machine.
    let blpop = redis::cmd("BLPOP").arg("later").arg(0).clone();
    let soon = Instant::now() + std::time::Duration::from_millis(50);
    let answer = connection.call(&blpop, soon).await;
    assert!(matches!(answer, Err(Error::Timeout)), "{answer:?}");
    let word = echo("next");
    let mut next = Box::pin(connection.call(&word, far()));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        next.as_mut().poll(&mut cx).is_pending(),
        "queued behind the BLPOP"
    );
    let pusher = Connection::open(&target(&server)).await.unwrap();
    let push = redis::cmd("RPUSH").arg("later").arg("x").clone();
    assert_eq!(pusher.call(&push, far()).await.unwrap(), Reply::Int(1));
    assert_eq!(next.await.unwrap(), Reply::Bulk(Some(b"next".to_vec())));
    assert!(!connection.is_broken());
}

/// The server gone: the call waiting ends at once with `Broken`, and so does every later
/// one (a new connection is made by the store).
#[tokio::test(flavor = "current_thread")]
async fn a_connection_that_broke_says_so_to_every_call() {
    let mut server = Server::start();
    let connection = Connection::open(&target(&server)).await.unwrap();
    let blpop = redis::cmd("BLPOP").arg("nothing").arg(0).clone();
    let blocked = connection.call(&blpop, far());
    let kill = async {
        tokio::task::yield_now().await;
        server.kill();
    };
    let (answer, ()) = tokio::join!(blocked, kill);
    assert!(matches!(answer, Err(Error::Broken)), "{answer:?}");
    assert!(connection.is_broken());
    assert!(matches!(
        connection.call(&echo("x"), far()).await,
        Err(Error::Broken)
    ));
}

/// The command writer against redis-rs's packing.
mod writer {
    use super::Writer;
    use proptest::prelude::*;

    /// An argument: bytes, a number, or bytes written through `with` (their length put in
    /// front afterwards).
    #[derive(Clone, Debug)]
    enum Arg {
        Bytes(Vec<u8>),
        Number(u64),
        With(Vec<u8>),
    }

    fn arg() -> impl Strategy<Value = Arg> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Arg::Bytes),
            any::<u64>().prop_map(Arg::Number),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Arg::With),
        ]
    }

    proptest! {
        /// What the writer puts in the buffer is byte for byte what redis-rs's `Cmd` packs
        /// for the same arguments, after whatever the buffer held.
        #[test]
        fn commands_are_written_as_redis_rs_packs_them(
            before in proptest::collection::vec(any::<u8>(), 0..16),
            args in proptest::collection::vec(arg(), 1..12),
        ) {
            let mut out = before.clone();
            let mut writer = Writer::command(&mut out, args.len());
            let mut cmd = redis::Cmd::new();
            for arg in &args {
                match arg {
                    Arg::Bytes(bytes) => {
                        writer.bytes(bytes);
                        cmd.arg(&bytes[..]);
                    }
                    Arg::Number(n) => {
                        writer.number(*n);
                        cmd.arg(*n);
                    }
                    Arg::With(bytes) => {
                        writer.with(|out| out.extend_from_slice(bytes));
                        cmd.arg(&bytes[..]);
                    }
                }
            }
            let mut expected = before;
            cmd.write_packed_command(&mut expected);
            prop_assert_eq!(out, expected);
        }
    }
}
