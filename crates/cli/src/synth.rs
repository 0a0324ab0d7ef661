//! `synth-log`: a deterministic synthetic log written to a real topic.

use std::time::Instant;

use anyhow::Context;
use ec_kafka::LogProducer;
use ec_log::{encode_record, EncodeOptions, DEFAULT_MAX_FRAME_BYTES};
use ec_testkit::{GenOptions, LogGenerator};

use crate::kafka_args::KafkaArgs;

#[derive(clap::Args)]
pub struct SynthArgs {
    #[arg(long)]
    topic: String,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, default_value = "local")]
    cluster_id: String,
    /// Records to write, genesis included.
    #[arg(long, default_value_t = 1000)]
    records: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
    /// After the first `--records`, keep writing one record per interval until interrupted (a stand-in
    /// publisher for demos).
    #[arg(long)]
    follow_interval_ms: Option<u64>,
}

pub async fn run(args: SynthArgs) -> anyhow::Result<()> {
    let producer = LogProducer::new(&args.kafka.connect().await?, &args.topic, args.max_frame_bytes)?;
    let opts = EncodeOptions { max_frame_bytes: args.max_frame_bytes, ..EncodeOptions::default() };
    let mut gen = LogGenerator::new(GenOptions { seed: args.seed, ..GenOptions::default() });
    let started = Instant::now();
    let (mut frames_total, mut bytes) = (0usize, 0usize);
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..args.records {
        let (sequence, record) = gen.next_record();
        let frames = encode_record(&args.cluster_id, sequence, &record, opts)?;
        frames_total += frames.len();
        bytes += frames.iter().map(Vec::len).sum::<usize>();
        pending.push_back(producer.enqueue(sequence, &frames)?);
        // Keep a bounded number of records in flight; the producer writes them in queue order.
        if pending.len() >= 512 {
            if let Some(p) = pending.pop_front() {
                p.wait().await.context("writing the synthetic log")?;
            }
        }
    }
    for p in pending {
        p.wait().await.context("writing the synthetic log")?;
    }
    println!(
        "wrote {} records ({frames_total} frames, {:.1} MB) to {} in {:.1}s",
        args.records,
        bytes as f64 / 1e6,
        args.topic,
        started.elapsed().as_secs_f64()
    );
    let Some(interval) = args.follow_interval_ms else { return Ok(()) };
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(interval.max(1)));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tick.tick() => {}
        }
        let (sequence, record) = gen.next_record();
        let frames = encode_record(&args.cluster_id, sequence, &record, opts)?;
        producer
            .send_frames(sequence, &frames)
            .await
            .with_context(|| format!("writing record {sequence}"))?;
    }
}
