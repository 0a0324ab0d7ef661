//! Rule derivation at every fork boundary of the named networks, and for genesis-file chains.

use super::*;

/// (network, block, timestamp, expected spec): each fork on both sides of its activation.
#[test]
fn named_networks_switch_rules_exactly_at_each_fork() {
    use SpecId::*;
    let cases: &[(&str, u64, u64, SpecId)] = &[
        // Mainnet: block forks, the merge, then timestamp forks (block numbers past the merge).
        ("mainnet", 0, 0, FRONTIER),
        ("mainnet", 1_149_999, 0, FRONTIER),
        ("mainnet", 1_150_000, 0, HOMESTEAD),
        ("mainnet", 2_462_999, 0, HOMESTEAD),
        ("mainnet", 2_463_000, 0, TANGERINE),
        ("mainnet", 2_674_999, 0, TANGERINE),
        ("mainnet", 2_675_000, 0, SPURIOUS_DRAGON),
        ("mainnet", 4_369_999, 0, SPURIOUS_DRAGON),
        ("mainnet", 4_370_000, 0, BYZANTIUM),
        ("mainnet", 7_279_999, 0, BYZANTIUM),
        ("mainnet", 7_280_000, 0, PETERSBURG),
        ("mainnet", 9_068_999, 0, PETERSBURG),
        ("mainnet", 9_069_000, 0, ISTANBUL),
        ("mainnet", 12_243_999, 0, ISTANBUL),
        ("mainnet", 12_244_000, 0, BERLIN),
        ("mainnet", 12_964_999, 0, BERLIN),
        ("mainnet", 12_965_000, 0, LONDON),
        ("mainnet", 15_537_393, 0, LONDON),
        ("mainnet", 15_537_394, 0, MERGE),
        ("mainnet", 17_034_869, 1_681_338_454, MERGE),
        ("mainnet", 17_034_870, 1_681_338_455, SHANGHAI),
        ("mainnet", 19_426_586, 1_710_338_134, SHANGHAI),
        ("mainnet", 19_426_587, 1_710_338_135, CANCUN),
        ("mainnet", 22_431_083, 1_746_612_310, CANCUN),
        ("mainnet", 22_431_084, 1_746_612_311, PRAGUE),
        ("mainnet", 23_935_693, 1_764_798_550, PRAGUE),
        ("mainnet", 23_935_694, 1_764_798_551, OSAKA),
        // BPO forks change blob parameters only.
        ("mainnet", 24_000_000, 1_767_747_671, OSAKA),
        // Sepolia: merged at block 1_450_409; Amsterdam on 2026-10-06.
        ("sepolia", 1_450_408, 0, LONDON),
        ("sepolia", 1_450_409, 0, MERGE),
        ("sepolia", 2_000_000, 1_677_557_087, MERGE),
        ("sepolia", 2_000_000, 1_677_557_088, SHANGHAI),
        ("sepolia", 5_000_000, 1_706_655_071, SHANGHAI),
        ("sepolia", 5_000_000, 1_706_655_072, CANCUN),
        ("sepolia", 7_000_000, 1_741_159_775, CANCUN),
        ("sepolia", 7_000_000, 1_741_159_776, PRAGUE),
        ("sepolia", 9_000_000, 1_760_427_359, PRAGUE),
        ("sepolia", 9_000_000, 1_760_427_360, OSAKA),
        ("sepolia", 10_000_000, 1_791_294_815, OSAKA),
        ("sepolia", 10_000_000, 1_791_294_816, AMSTERDAM),
        // Hoodi: every block fork and the merge at genesis, Cancun at genesis time.
        ("hoodi", 0, 0, CANCUN),
        ("hoodi", 60_000, 1_742_999_831, CANCUN),
        ("hoodi", 60_000, 1_742_999_832, PRAGUE),
        ("hoodi", 1_600_000, 1_761_677_591, PRAGUE),
        ("hoodi", 1_600_000, 1_761_677_592, OSAKA),
    ];
    for (network, number, timestamp, want) in cases {
        let spec = ChainSpec::named(network).unwrap();
        assert_eq!(spec.spec_id(*number, *timestamp), Ok(*want), "{network} block {number} time {timestamp}");
    }
}

/// Target blobs, max blobs, update fraction.
type Blobs = (u64, u64, u128);

/// (network, timestamp, expected blob parameters or none before Cancun).
#[test]
fn blob_parameters_follow_the_blob_schedule_and_bpo_forks() {
    let cases: &[(&str, u64, Option<Blobs>)] = &[
        ("mainnet", 1_710_338_134, None),
        ("mainnet", 1_710_338_135, Some((3, 6, 3_338_477))),
        ("mainnet", 1_746_612_310, Some((3, 6, 3_338_477))),
        ("mainnet", 1_746_612_311, Some((6, 9, 5_007_716))),
        ("mainnet", 1_764_798_551, Some((6, 9, 5_007_716))),
        ("mainnet", 1_765_290_070, Some((6, 9, 5_007_716))),
        ("mainnet", 1_765_290_071, Some((10, 15, 8_346_193))),
        ("mainnet", 1_767_747_670, Some((10, 15, 8_346_193))),
        ("mainnet", 1_767_747_671, Some((14, 21, 11_684_671))),
        ("sepolia", 1_706_655_072, Some((3, 6, 3_338_477))),
        ("sepolia", 1_761_017_183, Some((6, 9, 5_007_716))),
        ("sepolia", 1_761_017_184, Some((10, 15, 8_346_193))),
        ("sepolia", 1_761_607_008, Some((14, 21, 11_684_671))),
        ("hoodi", 0, Some((3, 6, 3_338_477))),
        ("hoodi", 1_762_365_719, Some((6, 9, 5_007_716))),
        ("hoodi", 1_762_365_720, Some((10, 15, 8_346_193))),
        ("hoodi", 1_762_955_543, Some((10, 15, 8_346_193))),
        ("hoodi", 1_762_955_544, Some((14, 21, 11_684_671))),
    ];
    for (network, timestamp, want) in cases {
        let spec = ChainSpec::named(network).unwrap();
        let got =
            spec.blob_params(*timestamp).map(|p| (p.target_blob_count, p.max_blob_count, p.update_fraction));
        assert_eq!(got, *want, "{network} at {timestamp}");
    }
    // Osaka adds the blob base cost (EIP-7918); Prague has none.
    let mainnet = ChainSpec::named("mainnet").unwrap();
    assert_eq!(mainnet.blob_params(1_764_798_550).unwrap().blob_base_cost, 0);
    assert_eq!(
        mainnet.blob_params(1_764_798_551).unwrap().blob_base_cost,
        alloy_eips::eip7840::BLOB_BASE_COST
    );
}

#[test]
fn the_transaction_gas_cap_applies_from_osaka() {
    let mainnet = ChainSpec::named("mainnet").unwrap();
    assert_eq!(mainnet.tx_gas_limit_cap(1_764_798_550), None);
    assert_eq!(mainnet.tx_gas_limit_cap(1_764_798_551), Some(1 << 24));
}

/// The conformance suite's chain: one fork every few blocks (block forks) or 30 seconds (time forks), from
/// Frontier to BPO2, as a genesis file gives it.
const CONFORMANCE_CONFIG: &str = r#"{"config": {"chainId": 3503995874084926, "homesteadBlock": 0,
  "eip150Block": 3, "eip155Block": 6, "eip158Block": 6, "byzantiumBlock": 9, "constantinopleBlock": 12,
  "petersburgBlock": 15, "istanbulBlock": 18, "muirGlacierBlock": 21, "berlinBlock": 24, "londonBlock": 27,
  "arrowGlacierBlock": 30, "grayGlacierBlock": 33, "mergeNetsplitBlock": 36, "shanghaiTime": 390,
  "cancunTime": 420, "pragueTime": 450, "osakaTime": 480, "bpo1Time": 510, "bpo2Time": 540,
  "terminalTotalDifficulty": 4732352, "depositContractAddress": "0x0000000000000000000000000000000000000000",
  "ethash": {}, "blobSchedule": {"cancun": {"target": 3, "max": 6, "baseFeeUpdateFraction": 3338477},
  "prague": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716},
  "osaka": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716},
  "bpo1": {"target": 10, "max": 15, "baseFeeUpdateFraction": 8346193},
  "bpo2": {"target": 14, "max": 21, "baseFeeUpdateFraction": 11684671}}}, "alloc": {}}"#;

#[test]
fn a_genesis_file_chain_runs_each_fork_from_its_block_or_time() {
    use SpecId::*;
    let spec = ChainSpec::from_json(CONFORMANCE_CONFIG).unwrap();
    assert_eq!(spec.chain_id(), 3_503_995_874_084_926);
    let cases: &[(u64, u64, SpecId)] = &[
        (2, 20, HOMESTEAD),
        (3, 30, TANGERINE),
        (6, 60, SPURIOUS_DRAGON),
        (9, 90, BYZANTIUM),
        // Constantinople before Petersburg: revm has no EIP-1283 SSTORE metering, so its opcodes with
        // Petersburg's metering (see ChainSpec::spec_id).
        (12, 120, PETERSBURG),
        (14, 140, PETERSBURG),
        (15, 150, PETERSBURG),
        (18, 180, ISTANBUL),
        (24, 240, BERLIN),
        (27, 270, LONDON),
        (35, 350, LONDON),
        (36, 360, MERGE),
        (39, 390, SHANGHAI),
        (41, 419, SHANGHAI),
        (42, 420, CANCUN),
        (45, 450, PRAGUE),
        (48, 480, OSAKA),
        (54, 540, OSAKA),
    ];
    for (number, timestamp, want) in cases {
        assert_eq!(spec.spec_id(*number, *timestamp), Ok(*want), "block {number} time {timestamp}");
    }
    assert_eq!(spec.blob_params(539).unwrap().max_blob_count, 15);
    assert_eq!(spec.blob_params(540).unwrap().max_blob_count, 21);
    assert!(spec.blob_params(419).is_none());
}

#[test]
fn a_fork_the_binary_does_not_implement_is_refused_from_its_activation() {
    let json = r#"{"chainId": 1337, "londonBlock": 0, "shanghaiTime": 0, "cancunTime": 0,
        "pragueTime": 0, "osakaTime": 0, "bogotaTime": 100, "terminalTotalDifficulty": 0}"#;
    let spec = ChainSpec::from_json(json).unwrap();
    assert_eq!(spec.spec_id(1, 99), Ok(SpecId::OSAKA));
    let err = spec.spec_id(2, 100).unwrap_err();
    assert_eq!(err, SpecError::UnsupportedFork { fork: "Bogota".into(), at: "timestamp 100".into() });
    assert!(err.to_string().contains("upgrade Ether Cattle"), "{err}");

    // A fork field this build has never heard of counts the same.
    let json = r#"{"chainId": 1337, "londonBlock": 0, "futureForkTime": 7}"#;
    let spec = ChainSpec::from_json(json).unwrap();
    assert!(spec.spec_id(0, 6).is_ok());
    assert!(
        matches!(spec.spec_id(0, 7), Err(SpecError::UnsupportedFork { fork, .. }) if fork == "futureFork")
    );
}

#[test]
fn a_merge_by_difficulty_alone_needs_its_block() {
    let json = r#"{"chainId": 5, "londonBlock": 0, "terminalTotalDifficulty": 100}"#;
    assert_eq!(ChainSpec::from_json(json).unwrap_err(), SpecError::MergeBlockUnknown(U256::from(100)));
}

#[test]
fn the_record_source_round_trips_and_names_the_chain() {
    for (name, id) in NAMED_NETWORKS {
        let spec = ChainSpec::named(name).unwrap();
        assert_eq!(spec.chain_id(), id);
        assert_eq!(spec.source(), ChainSpecSource::Named(name.to_string()));
        assert_eq!(ChainSpec::for_chain_id(id).unwrap().name(), name);
    }
    let custom = ChainSpec::from_json(CONFORMANCE_CONFIG).unwrap();
    let again = ChainSpec::from_source(&custom.source(), custom.chain_id()).unwrap();
    assert_eq!(again.forks(), custom.forks());
    assert_eq!(again.blob_params(540), custom.blob_params(540));
    assert_eq!(
        ChainSpec::from_source(&ChainSpecSource::Named("mainnet".into()), 5).unwrap_err(),
        SpecError::ChainIdMismatch { spec: 1, chain: 5 }
    );
    assert!(matches!(ChainSpec::named("goerli"), Err(SpecError::UnknownNetwork(_))));
}

#[test]
fn a_dev_chain_runs_osaka_from_genesis_with_geths_dev_blob_schedule() {
    let spec = ChainSpec::dev(1337);
    assert_eq!(spec.spec_id(0, 0), Ok(SpecId::OSAKA));
    assert_eq!(spec.tx_gas_limit_cap(0), Some(1 << 24));
    let blobs = spec.blob_params(0).unwrap();
    assert_eq!((blobs.target_blob_count, blobs.max_blob_count), (6, 9));
}

#[test]
fn fork_hashes_of_mainnet_match_eip_2124() {
    let mainnet = ChainSpec::named("mainnet").unwrap();
    let genesis = alloy_primitives::b256!("d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3");
    // (time, fork hash): Shanghai, Cancun, Prague (EIP-2124's published values).
    for (t, want) in [
        (1_681_338_455, [0xdc, 0xe9, 0x6c, 0x2d]),
        (1_710_338_135, [0x9f, 0x3d, 0x22, 0x54]),
        (1_746_612_311, [0xc3, 0x76, 0xcf, 0x8b]),
    ] {
        assert_eq!(mainnet.fork_hash(genesis, 0, t).0, want, "at {t}");
    }
    let config = mainnet.eth_config(genesis, 0, 1_746_612_311);
    assert_eq!(config["current"]["activationTime"], 1_746_612_311);
    assert_eq!(config["current"]["blobSchedule"]["max"], 9);
    assert_eq!(
        config["current"]["systemContracts"]["DEPOSIT_CONTRACT_ADDRESS"],
        "0x00000000219ab540356cbb839cbe05303d7705fa"
    );
    assert_eq!(config["next"]["activationTime"], 1_764_798_551);
    assert_eq!(config["next"]["precompiles"]["P256VERIFY"], "0x0000000000000000000000000000000000000100");
    assert_eq!(config["last"]["blobSchedule"]["max"], 21);
}

#[test]
fn a_named_networks_file_with_a_fork_the_binary_lacks_is_refused() {
    let mainnet = ChainSpec::named("mainnet").unwrap();
    let mut config = mainnet.config().clone();
    assert_eq!(mainnet.check_covers(&config), Ok(()));
    config.amsterdam_time = Some(1_800_000_000);
    assert_eq!(
        mainnet.check_covers(&config),
        Err(SpecError::UnsupportedFork { fork: "Amsterdam".into(), at: "timestamp 1800000000".into() })
    );
}
