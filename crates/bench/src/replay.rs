//! `ec-bench replay`: how fast a replica applies the log, next to how fast RocksDB writes the same bytes.
//!
//! One run, one machine, the same generated log for every row, so the ratios mean something even on a
//! noisy shared host. Results and the command go in `docs/benchmarks.md`.

use std::time::{Duration, Instant};

use anyhow::Context;
use ec_kafka::{KafkaConfig, LogProducer};
use ec_log::{encode_record, Assembler, EncodeOptions};
use ec_replica::{ReplicaConfig, Status};
use ec_store::{Store, StoreOptions};
use ec_testkit::{GenOptions, LogGenerator, MockBroker};

use crate::mainnet;

#[derive(clap::Args)]
pub struct Args {
    /// Records in the generated log (genesis, blocks, reverts, heartbeats).
    #[arg(long, default_value_t = 20_000)]
    records: usize,
    /// Transactions per block, at most (each carries receipts and logs).
    #[arg(long, default_value_t = 4)]
    max_txs: usize,
    /// Also replay through a Kafka broker (librdkafka's mock cluster, in this process). The mock keeps
    /// about 5 MiB per partition, so keep the log under that for this row.
    #[arg(long)]
    kafka: bool,
    /// RocksDB options: `replica` (what the replica runs) or `rocksdb-defaults` (the baseline).
    #[arg(long, default_value = "replica")]
    tuning: String,
}

/// Decodes the frames as a replica does (offsets from 0) and hands each whole record to `apply`.
fn decode_each(
    frames: &[(u64, Vec<Vec<u8>>)],
    mut apply: impl FnMut(ec_log::Assembled) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut assembler = Assembler::new();
    for (offset, f) in frames.iter().flat_map(|(_, fs)| fs).enumerate() {
        if let Some(rec) = assembler.push(offset as i64, f)? {
            apply(rec)?;
        }
    }
    Ok(())
}

struct Row {
    name: &'static str,
    elapsed: Duration,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store_opts = StoreOptions { tuning: mainnet::tuning(&args.tuning, 512)?, ..StoreOptions::default() };
    let opts = EncodeOptions::default();
    let gen = GenOptions { max_txs: args.max_txs, big_block_chance: 0.0, ..GenOptions::default() };
    let records = LogGenerator::records(gen, args.records);
    let frames: Vec<(u64, Vec<Vec<u8>>)> = records
        .iter()
        .map(|(s, r)| encode_record("bench", *s, r, opts).map(|f| (*s, f)))
        .collect::<Result<_, _>>()?;
    let wire_bytes: usize = frames.iter().flat_map(|(_, f)| f.iter().map(Vec::len)).sum();
    let n = records.len();
    let mut rows = Vec::new();

    // 1. Decode only: frames -> records.
    let started = Instant::now();
    decode_each(&frames, |rec| {
        std::hint::black_box(rec);
        Ok(())
    })?;
    rows.push(Row { name: "decode (frames -> records)", elapsed: started.elapsed() });
    let frame_count: usize = frames.iter().map(|(_, fs)| fs.len()).sum();

    // 2. RocksDB raw: the same bytes, one write batch per record, keyed by offset.
    let dir = tempfile::tempdir()?;
    {
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        o.set_compression_type(rocksdb::DBCompressionType::Lz4);
        o.set_write_buffer_size(64 << 20);
        let db = rocksdb::DB::open(&o, dir.path().join("raw"))?;
        let started = Instant::now();
        let mut offset = 0u64;
        for (_, fs) in &frames {
            let mut batch = rocksdb::WriteBatch::default();
            for f in fs {
                batch.put(offset.to_be_bytes(), f);
                offset += 1;
            }
            db.write(batch)?;
        }
        rows.push(Row { name: "rocksdb raw write batches (same bytes)", elapsed: started.elapsed() });
    }

    // 3. Replay into the store from memory: decode + apply + atomic batch with offset.
    {
        let store = Store::open(&dir.path().join("store"), store_opts.clone())?;
        let started = Instant::now();
        decode_each(&frames, |rec| Ok(store.apply(&rec).map(drop)?))?;
        rows.push(Row { name: "replay from memory (decode + apply)", elapsed: started.elapsed() });
    }

    // 3b. The same through the replica's pipeline: the next record decoded and prepared while the one before
    // is written.
    {
        let store = std::sync::Arc::new(Store::open(&dir.path().join("piped"), store_opts.clone())?);
        let mut pipeline = ec_store::Pipeline::new(store.clone())?;
        // Catching up, as a replica behind the log's end does (without the write-ahead log only with
        // `catch_up_wal` off), made durable at the end.
        pipeline.set_catching_up(true);
        let started = Instant::now();
        decode_each(&frames, |rec| Ok(pipeline.submit(rec).map(drop)?))?;
        pipeline.flush()?;
        store.persist()?;
        rows.push(Row { name: "replay from memory, pipelined", elapsed: started.elapsed() });
    }

    // 4. Replay through Kafka: the real replica loop against a broker.
    if args.kafka {
        let broker = MockBroker::start(&["bench"])?;
        let brokers = broker.bootstrap_servers();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        rt.block_on(async {
            let producer =
                LogProducer::new(&KafkaConfig::plaintext(&brokers), "bench", opts.max_frame_bytes)?;
            let mut pending = Vec::with_capacity(frames.len());
            for (s, fs) in &frames {
                pending.push(producer.enqueue(*s, fs)?);
            }
            for p in pending {
                p.wait().await?;
            }
            let cfg = ReplicaConfig {
                data_dir: dir.path().join("kafka-replica"),
                kafka: KafkaConfig::plaintext(&brokers),
                topic: "bench".into(),
                store: store_opts.clone(),
                exit_when_caught_up: true,
                progress_interval: Duration::from_secs(3600),
                events: None,
                pipeline_from_writes: ec_store::HAND_OVER_FROM,
            };
            let (tx, _rx) = tokio::sync::watch::channel(Status::default());
            let started = Instant::now();
            let progress = ec_replica::run(cfg, tx, std::future::pending()).await?;
            anyhow::ensure!(progress.records as usize == n, "replayed {} of {n} records", progress.records);
            rows.push(Row { name: "replica from Kafka (mock broker)", elapsed: started.elapsed() });
            anyhow::Ok(())
        })
        .context("kafka replay")?;
    }

    let raw = rows[1].elapsed.as_secs_f64();
    println!("{n} records, {frame_count} frames, {:.2} MB on the wire (zstd)", wire_bytes as f64 / 1e6);
    println!("{:<42} {:>10} {:>12} {:>9} {:>14}", "path", "seconds", "records/s", "MB/s", "vs rocksdb raw");
    for r in &rows {
        let s = r.elapsed.as_secs_f64();
        println!(
            "{:<42} {:>10.3} {:>12.0} {:>9.1} {:>13.2}x",
            r.name,
            s,
            n as f64 / s,
            wire_bytes as f64 / 1e6 / s,
            raw / s
        );
    }
    Ok(())
}
