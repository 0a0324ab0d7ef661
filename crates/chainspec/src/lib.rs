//! The rules of a chain at every block: which EVM specification runs it, which blob parameters price its
//! blobs, which base-fee rules move its base fee.
//!
//! A topic's first record names its chain's specification ([`ec_log::ChainSpecSource`]): a network whose
//! schedule this binary carries (mainnet, Sepolia, Holesky, Hoodi, from `alloy-hardforks`), or the geth-style
//! `config` object of a genesis file (`alloy_genesis::ChainConfig`). [`ChainSpec`] turns either into one
//! fork schedule, and answers per block from it:
//!
//! - [`ChainSpec::spec_id`]: revm's `SpecId`, by `alloy-evm`'s mapping of the schedule;
//! - [`ChainSpec::blob_params`]: target, maximum and update fraction (EIP-4844, EIP-7691, EIP-7840, the BPO
//!   forks of EIP-7892), as `alloy-eips` defines them;
//! - [`ChainSpec::tx_gas_limit_cap`]: the per-transaction gas cap of EIP-7825 where active.
//!
//! A fork this binary does not implement (one `alloy-evm` cannot map, or a `…Time`/`…Block` field it does not
//! know) is kept in the schedule: a block at or after it is refused with [`SpecError::UnsupportedFork`]
//! rather than run under the wrong rules. A new fork means new rules: upgrade the binary first.

use alloy_eips::{eip1559::BaseFeeParams, eip7840::BlobParams, eip7892::BlobScheduleBlobParams};
use alloy_genesis::ChainConfig;
use alloy_hardforks::{EthereumChainHardforks, EthereumHardfork, EthereumHardforks, ForkCondition};
use alloy_primitives::{Address, B256, U256};
use ec_log::ChainSpecSource;
use revm::primitives::hardfork::SpecId;

/// The networks whose specification the binary carries, by name and chain id.
pub const NAMED_NETWORKS: [(&str, u64); 4] =
    [("mainnet", 1), ("sepolia", 11_155_111), ("holesky", 17_000), ("hoodi", 560_048)];

/// The per-transaction gas limit cap of EIP-7825 (Osaka): 2^24.
pub const OSAKA_TX_GAS_LIMIT_CAP: u64 = 1 << 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("unknown network {0:?} (known: mainnet, sepolia, holesky, hoodi; or give a genesis file)")]
    UnknownNetwork(String),
    #[error("the chain specification does not parse: {0}")]
    BadConfig(String),
    #[error(
        "the chain specification names chain id {spec}, but the chain is {chain}: the specification is for \
         another network"
    )]
    ChainIdMismatch { spec: u64, chain: u64 },
    #[error(
        "the chain's terminal total difficulty is {0} but mergeNetsplitBlock is not set: the merge block \
         cannot be placed; add mergeNetsplitBlock to the genesis config"
    )]
    MergeBlockUnknown(U256),
    #[error(
        "{fork} is active at {at} and this binary does not implement it: upgrade Ether Cattle to a release \
         that knows {fork} before following this chain past it"
    )]
    UnsupportedFork { fork: String, at: String },
}

/// A chain's rules: its fork schedule and blob schedule, with the geth-style config they came from.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    chain_id: u64,
    /// The named network, or `None` for a genesis-file chain.
    name: Option<&'static str>,
    config: ChainConfig,
    forks: EthereumChainHardforks,
    blobs: BlobScheduleBlobParams,
    /// Forks in the schedule that this binary cannot run, with when they activate.
    unsupported: Vec<(String, ForkCondition)>,
}

impl ChainSpec {
    /// The specification a topic's first record names, for a chain with id `chain_id`.
    pub fn from_source(source: &ChainSpecSource, chain_id: u64) -> Result<Self, SpecError> {
        let spec = match source {
            ChainSpecSource::Named(name) => Self::named(name)?,
            ChainSpecSource::Config(json) => Self::from_json(json)?,
        };
        if spec.chain_id != chain_id {
            return Err(SpecError::ChainIdMismatch { spec: spec.chain_id, chain: chain_id });
        }
        Ok(spec)
    }

    /// A network whose schedule the binary carries.
    pub fn named(name: &str) -> Result<Self, SpecError> {
        let lower = name.to_ascii_lowercase();
        let (name, forks, chain_id): (&'static str, Vec<(EthereumHardfork, ForkCondition)>, u64) =
            match lower.as_str() {
                "mainnet" => ("mainnet", EthereumHardfork::mainnet().to_vec(), 1),
                "sepolia" => ("sepolia", EthereumHardfork::sepolia().to_vec(), 11_155_111),
                "holesky" => ("holesky", EthereumHardfork::holesky().to_vec(), 17_000),
                "hoodi" => ("hoodi", EthereumHardfork::hoodi().to_vec(), 560_048),
                _ => return Err(SpecError::UnknownNetwork(name.to_string())),
            };
        let mut config = config_from_forks(chain_id, &forks);
        if name == "mainnet" {
            config.deposit_contract_address = Some(alloy_eips::eip6110::MAINNET_DEPOSIT_CONTRACT_ADDRESS);
        }
        // The schedule itself straight from alloy-hardforks: its merge entries carry both the first
        // post-merge block and the fork block EIP-2124 counts (a geth-style config of these networks places
        // the merge by total difficulty only).
        Ok(Self {
            chain_id,
            name: Some(name),
            blobs: config.blob_schedule_blob_params(),
            forks: EthereumChainHardforks::new(forks),
            config,
            unsupported: Vec::new(),
        })
    }

    /// The named network with this chain id, if the binary carries one.
    pub fn for_chain_id(chain_id: u64) -> Option<Self> {
        let (name, _) = NAMED_NETWORKS.iter().find(|(_, id)| *id == chain_id)?;
        Self::named(name).ok()
    }

    /// A chain from a genesis file (`{"config": {...}, "alloc": ...}`) or a bare geth-style config object.
    pub fn from_json(json: &str) -> Result<Self, SpecError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| SpecError::BadConfig(e.to_string()))?;
        let config = value.get("config").cloned().unwrap_or(value);
        let config: ChainConfig =
            serde_json::from_value(config).map_err(|e| SpecError::BadConfig(e.to_string()))?;
        Self::from_config(config)
    }

    /// A chain from its geth-style config.
    pub fn from_config(config: ChainConfig) -> Result<Self, SpecError> {
        let (forks, unsupported) = forks_from_config(&config)?;
        Ok(Self {
            chain_id: config.chain_id,
            name: None,
            blobs: config.blob_schedule_blob_params(),
            forks: EthereumChainHardforks::new(forks),
            config,
            unsupported,
        })
    }

    /// A development chain with id `chain_id`: every fork this binary runs active from block 0, with the
    /// blob schedule of geth's `--dev` (Cancun's and Prague's defaults; Osaka inherits Prague's).
    pub fn dev(chain_id: u64) -> Self {
        let forks: Vec<_> = EthereumHardfork::devnet()
            .into_iter()
            .filter(|(f, _)| {
                !matches!(f, EthereumHardfork::Dao | EthereumHardfork::Bpo1 | EthereumHardfork::Bpo2)
            })
            .collect();
        let mut config = config_from_forks(chain_id, &forks);
        config.blob_schedule.remove("bpo1");
        config.blob_schedule.remove("bpo2");
        Self::from_config(config).expect("the dev schedule only holds forks this binary runs")
    }

    /// Refuses a genesis-file config that schedules a timestamp fork this specification does not have: a
    /// named network's file from a newer client knows a fork this binary's schedule lacks, and following the
    /// chain past it would run old rules. Forks the config leaves out are not an error (geth's files omit
    /// nothing this check needs).
    pub fn check_covers(&self, config: &ChainConfig) -> Result<(), SpecError> {
        let ours = self.fork_times();
        let runnable =
            time_forks(config).into_iter().map(|(f, t)| (f.to_string(), ForkCondition::Timestamp(t)));
        for (fork, condition) in runnable.chain(unsupported_forks(config)) {
            if let ForkCondition::Timestamp(t) = condition {
                if !ours.contains(&t) {
                    return Err(SpecError::UnsupportedFork { fork, at: activation(&condition) });
                }
            }
        }
        Ok(())
    }

    /// What a topic's first record carries to name this specification.
    pub fn source(&self) -> ChainSpecSource {
        match self.name {
            Some(name) => ChainSpecSource::Named(name.to_string()),
            None => ChainSpecSource::Config(
                serde_json::to_string(&self.config).expect("a ChainConfig always serialises"),
            ),
        }
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// "mainnet", "sepolia", … or "custom" for a genesis-file chain.
    pub fn name(&self) -> &str {
        self.name.unwrap_or("custom")
    }

    /// The geth-style config object of this chain.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// The EVM rules of the block with this number and timestamp.
    pub fn spec_id(&self, number: u64, timestamp: u64) -> Result<SpecId, SpecError> {
        self.check_supported(number, timestamp)?;
        let spec = alloy_evm::spec_by_timestamp_and_block_number(&self.forks, timestamp, number);
        // alloy-evm maps Constantinople without Petersburg (mainnet activated both at once) to Byzantium,
        // which lacks Constantinople's opcodes (SHL, SHR, SAR, CREATE2, EXTCODEHASH). revm has no
        // Constantinople (EIP-1283's SSTORE metering never ran on mainnet): Petersburg is the closest; only
        // SSTORE gas differs from geth on a chain that spaces the two forks apart.
        if spec == SpecId::BYZANTIUM && self.forks.is_constantinople_active_at_block(number) {
            return Ok(SpecId::PETERSBURG);
        }
        Ok(spec)
    }

    /// Refuses a block at or after a fork this binary does not implement.
    pub fn check_supported(&self, number: u64, timestamp: u64) -> Result<(), SpecError> {
        for (fork, condition) in &self.unsupported {
            let active = match condition {
                ForkCondition::Timestamp(t) => timestamp >= *t,
                ForkCondition::Block(b) => number >= *b,
                _ => false,
            };
            if active {
                return Err(SpecError::UnsupportedFork { fork: fork.clone(), at: activation(condition) });
            }
        }
        Ok(())
    }

    /// The blob parameters of a block with this timestamp; `None` before Cancun (no blobs).
    pub fn blob_params(&self, timestamp: u64) -> Option<BlobParams> {
        let f = &self.forks;
        if !f.is_cancun_active_at_timestamp(timestamp) {
            return None;
        }
        if let Some(p) = self.blobs.active_scheduled_params_at_timestamp(timestamp) {
            return Some(*p);
        }
        Some(if f.is_osaka_active_at_timestamp(timestamp) {
            self.blobs.osaka
        } else if f.is_prague_active_at_timestamp(timestamp) {
            self.blobs.prague
        } else {
            self.blobs.cancun
        })
    }

    /// The base-fee rules (EIP-1559) of the chain.
    pub fn base_fee_params(&self) -> BaseFeeParams {
        BaseFeeParams::ethereum()
    }

    /// Whether the block with this number has a base fee (London).
    pub fn is_london(&self, number: u64) -> bool {
        self.forks.is_london_active_at_block(number)
    }

    /// The per-transaction gas cap of EIP-7825 for a block with this timestamp, where active (Osaka).
    pub fn tx_gas_limit_cap(&self, timestamp: u64) -> Option<u64> {
        self.forks.is_osaka_active_at_timestamp(timestamp).then_some(OSAKA_TX_GAS_LIMIT_CAP)
    }

    /// The activation times of the timestamp forks, oldest first.
    fn fork_times(&self) -> Vec<u64> {
        self.forks()
            .into_iter()
            .filter_map(|(_, c)| match c {
                ForkCondition::Timestamp(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// The fork schedule, oldest first, as (fork, activation).
    pub fn forks(&self) -> Vec<(EthereumHardfork, ForkCondition)> {
        EthereumHardfork::VARIANTS
            .iter()
            .map(|f| (*f, self.forks.ethereum_fork_activation(*f)))
            .filter(|(_, c)| *c != ForkCondition::Never)
            .collect()
    }
}

impl ChainSpec {
    /// EIP-7910 `eth_config`, as geth answers it: the configuration of the timestamp fork active at
    /// `head_time` (`current`), of the next scheduled one and of the last one (both `null` when nothing is
    /// scheduled). Before Shanghai there is no timestamp fork: `current` is `null`.
    pub fn eth_config(&self, genesis_hash: B256, genesis_time: u64, head_time: u64) -> serde_json::Value {
        let times = self.fork_times();
        let current = times.iter().copied().filter(|t| *t <= head_time).max();
        let next = times.iter().copied().filter(|t| *t > head_time).min();
        let last = times.iter().copied().max();
        let assemble = |t: Option<u64>| {
            t.map_or(serde_json::Value::Null, |t| self.fork_config(genesis_hash, genesis_time, t))
        };
        let next_config = assemble(next);
        let last_config = if next.is_some() { assemble(last) } else { serde_json::Value::Null };
        serde_json::json!({ "current": assemble(current), "next": next_config, "last": last_config })
    }

    /// One entry of `eth_config`: the fork active at time `t`.
    fn fork_config(&self, genesis_hash: B256, genesis_time: u64, t: u64) -> serde_json::Value {
        use alloy_eips::{eip2935, eip4788, eip7002, eip7251};
        use revm::precompile::{PrecompileSpecId, Precompiles};
        let spec = alloy_evm::spec_by_timestamp_and_block_number(&self.forks, t, u64::MAX);
        let mut precompiles = serde_json::Map::new();
        for p in Precompiles::new(PrecompileSpecId::from_spec_id(spec)).inner().values() {
            precompiles.insert(p.id().name().to_string(), serde_json::json!(p.address()));
        }
        if spec.is_enabled_in(SpecId::CANCUN) {
            // This build leaves out the KZG library (a C build): the precompile is part of the fork all the
            // same, and of its configuration.
            precompiles
                .entry("KZG_POINT_EVALUATION")
                .or_insert(serde_json::json!(Address::with_last_byte(0x0a)));
        }
        let mut system = serde_json::Map::new();
        if spec.is_enabled_in(SpecId::CANCUN) {
            system.insert("BEACON_ROOTS_ADDRESS".into(), serde_json::json!(eip4788::BEACON_ROOTS_ADDRESS));
        }
        if spec.is_enabled_in(SpecId::PRAGUE) {
            let deposit = self.config.deposit_contract_address.unwrap_or_default();
            system.insert(
                "CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS".into(),
                serde_json::json!(eip7251::CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS),
            );
            system.insert("DEPOSIT_CONTRACT_ADDRESS".into(), serde_json::json!(deposit));
            system.insert(
                "HISTORY_STORAGE_ADDRESS".into(),
                serde_json::json!(eip2935::HISTORY_STORAGE_ADDRESS),
            );
            system.insert(
                "WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS".into(),
                serde_json::json!(eip7002::WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS),
            );
        }
        let blobs = self.blob_params(t).map_or(serde_json::Value::Null, |p| {
            serde_json::json!({"target": p.target_blob_count, "max": p.max_blob_count, "baseFeeUpdateFraction": p.update_fraction})
        });
        serde_json::json!({
            "activationTime": if t <= genesis_time { 0 } else { t },
            "blobSchedule": blobs,
            "chainId": format!("{:#x}", self.chain_id),
            "forkId": format!("0x{}", alloy_primitives::hex::encode(self.fork_hash(genesis_hash, genesis_time, t).0)),
            "precompiles": precompiles,
            "systemContracts": system,
        })
    }

    /// The EIP-2124 fork hash at time `t` with every block fork passed: the genesis hash, then each distinct
    /// fork block after 0 and each distinct fork time after genesis up to `t`, in order.
    pub fn fork_hash(&self, genesis_hash: B256, genesis_time: u64, t: u64) -> alloy_eip2124::ForkHash {
        let mut blocks = Vec::new();
        let mut times = Vec::new();
        for (_, condition) in self.forks() {
            match condition {
                ForkCondition::Block(b) | ForkCondition::TTD { fork_block: Some(b), .. } if b > 0 => {
                    blocks.push(b)
                }
                ForkCondition::Timestamp(ts) if ts > genesis_time && ts <= t => times.push(ts),
                _ => {}
            }
        }
        blocks.sort_unstable();
        blocks.dedup();
        times.sort_unstable();
        times.dedup();
        let mut hash = alloy_eip2124::ForkHash::from(genesis_hash);
        for v in blocks.into_iter().chain(times) {
            hash += v;
        }
        hash
    }
}

/// The geth-style config of a schedule from `alloy-hardforks` (the named networks carry no config file).
fn config_from_forks(chain_id: u64, forks: &[(EthereumHardfork, ForkCondition)]) -> ChainConfig {
    use EthereumHardfork as H;
    let block = |fork| match forks.iter().find(|(f, _)| *f == fork).map(|(_, c)| *c) {
        Some(ForkCondition::Block(b)) => Some(b),
        Some(ForkCondition::TTD { activation_block_number, .. }) => Some(activation_block_number),
        _ => None,
    };
    let merge_fork_block = forks.iter().find_map(|(f, c)| match (f, c) {
        (H::Paris, ForkCondition::TTD { fork_block, .. }) => *fork_block,
        _ => None,
    });
    let time = |fork| match forks.iter().find(|(f, _)| *f == fork).map(|(_, c)| *c) {
        Some(ForkCondition::Timestamp(t)) => Some(t),
        _ => None,
    };
    let ttd = forks.iter().find_map(|(f, c)| match (f, c) {
        (H::Paris, ForkCondition::TTD { total_difficulty, .. }) => Some(*total_difficulty),
        (H::Paris, ForkCondition::Block(_)) => Some(U256::ZERO),
        _ => None,
    });
    let mut config = ChainConfig {
        chain_id,
        homestead_block: block(H::Homestead),
        dao_fork_block: block(H::Dao),
        dao_fork_support: block(H::Dao).is_some(),
        eip150_block: block(H::Tangerine),
        eip155_block: block(H::SpuriousDragon),
        eip158_block: block(H::SpuriousDragon),
        byzantium_block: block(H::Byzantium),
        constantinople_block: block(H::Constantinople),
        petersburg_block: block(H::Petersburg),
        istanbul_block: block(H::Istanbul),
        muir_glacier_block: block(H::MuirGlacier),
        berlin_block: block(H::Berlin),
        london_block: block(H::London),
        arrow_glacier_block: block(H::ArrowGlacier),
        gray_glacier_block: block(H::GrayGlacier),
        // The merge's fork block (EIP-2124), where the network has one (Sepolia); a named network's spec
        // places the merge from alloy-hardforks, not from this config.
        merge_netsplit_block: merge_fork_block.or(block(H::Paris).filter(|b| *b == 0)),
        terminal_total_difficulty: ttd,
        terminal_total_difficulty_passed: ttd.is_some(),
        shanghai_time: time(H::Shanghai),
        cancun_time: time(H::Cancun),
        prague_time: time(H::Prague),
        osaka_time: time(H::Osaka),
        bpo1_time: time(H::Bpo1),
        bpo2_time: time(H::Bpo2),
        bpo3_time: time(H::Bpo3),
        bpo4_time: time(H::Bpo4),
        bpo5_time: time(H::Bpo5),
        amsterdam_time: time(H::Amsterdam),
        bogota_time: time(H::Bogota),
        ..Default::default()
    };
    // The blob schedule of EIP-7840, for the blob forks the schedule has.
    let blobs = [
        ("cancun", H::Cancun, BlobParams::cancun()),
        ("prague", H::Prague, BlobParams::prague()),
        ("osaka", H::Osaka, BlobParams::osaka()),
        ("bpo1", H::Bpo1, BlobParams::bpo1()),
        ("bpo2", H::Bpo2, BlobParams::bpo2()),
    ];
    for (key, fork, params) in blobs {
        if time(fork).is_some() {
            config.blob_schedule.insert(key.to_string(), params);
        }
    }
    config
}

/// The fork schedule a geth-style config describes, and the forks in it this binary cannot run.
#[allow(clippy::type_complexity)]
fn forks_from_config(
    c: &ChainConfig,
) -> Result<(Vec<(EthereumHardfork, ForkCondition)>, Vec<(String, ForkCondition)>), SpecError> {
    use EthereumHardfork as H;
    let mut forks = vec![(H::Frontier, ForkCondition::ZERO_BLOCK)];
    let blocks = [
        (H::Homestead, c.homestead_block),
        (H::Tangerine, c.eip150_block),
        (H::SpuriousDragon, c.eip158_block.or(c.eip155_block)),
        (H::Byzantium, c.byzantium_block),
        (H::Constantinople, c.constantinople_block),
        (H::Petersburg, c.petersburg_block),
        (H::Istanbul, c.istanbul_block),
        (H::MuirGlacier, c.muir_glacier_block),
        (H::Berlin, c.berlin_block),
        (H::London, c.london_block),
        (H::ArrowGlacier, c.arrow_glacier_block),
        (H::GrayGlacier, c.gray_glacier_block),
    ];
    forks.extend(blocks.into_iter().filter_map(|(f, b)| Some((f, ForkCondition::Block(b?)))));
    if c.dao_fork_support {
        if let Some(b) = c.dao_fork_block {
            forks.push((H::Dao, ForkCondition::Block(b)));
        }
    }
    if let Some(ttd) = c.terminal_total_difficulty {
        // geth places the merge by total difficulty; a replica has no difficulty sums, so the merge block
        // must be known: mergeNetsplitBlock, or genesis when the difficulty was zero from the start.
        let block = match c.merge_netsplit_block {
            Some(b) => b,
            None if ttd.is_zero() => 0,
            None => return Err(SpecError::MergeBlockUnknown(ttd)),
        };
        forks.push((
            H::Paris,
            ForkCondition::TTD {
                activation_block_number: block,
                fork_block: c.merge_netsplit_block,
                total_difficulty: ttd,
            },
        ));
    }
    forks.extend(time_forks(c).into_iter().map(|(f, t)| (f, ForkCondition::Timestamp(t))));
    Ok((forks, unsupported_forks(c)))
}

/// The timestamp forks a geth-style config schedules that this binary runs, with their times.
fn time_forks(c: &ChainConfig) -> Vec<(EthereumHardfork, u64)> {
    use EthereumHardfork as H;
    let times = [
        (H::Shanghai, c.shanghai_time),
        (H::Cancun, c.cancun_time),
        (H::Prague, c.prague_time),
        (H::Osaka, c.osaka_time),
        (H::Bpo1, c.bpo1_time),
        (H::Bpo2, c.bpo2_time),
        (H::Bpo3, c.bpo3_time),
        (H::Bpo4, c.bpo4_time),
        (H::Bpo5, c.bpo5_time),
        (H::Amsterdam, c.amsterdam_time),
    ];
    times.into_iter().filter_map(|(f, t)| Some((f, t?))).collect()
}

/// The forks a geth-style config schedules that this binary does not implement: Bogota (alloy-evm maps no
/// revm specification to it), and every `…Time` or `…Block` field this build does not know.
fn unsupported_forks(c: &ChainConfig) -> Vec<(String, ForkCondition)> {
    let mut unsupported = Vec::new();
    if let Some(t) = c.bogota_time {
        unsupported.push(("Bogota".to_string(), ForkCondition::Timestamp(t)));
    }
    for (key, value) in c.extra_fields.iter() {
        let Some(n) = value.as_u64() else { continue };
        if let Some(name) = key.strip_suffix("Time") {
            unsupported.push((name.to_string(), ForkCondition::Timestamp(n)));
        } else if let Some(name) = key.strip_suffix("Block") {
            unsupported.push((name.to_string(), ForkCondition::Block(n)));
        }
    }
    unsupported
}

/// When a fork activates, for messages: "timestamp T" or "block N".
fn activation(condition: &ForkCondition) -> String {
    match condition {
        ForkCondition::Timestamp(t) => format!("timestamp {t}"),
        ForkCondition::Block(b) | ForkCondition::TTD { activation_block_number: b, .. } => {
            format!("block {b}")
        }
        ForkCondition::Never => "never".to_string(),
    }
}

#[cfg(test)]
mod tests;
