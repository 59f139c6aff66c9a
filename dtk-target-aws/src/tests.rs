//! Unit tests of the pure parts: CIDR arithmetic, rules, images, tokens, redaction.
//! The EC2 operations are tested against moto in `tests/it`.

use expect_test::{Expect, expect};
use proptest::prelude::*;

use crate::instances::client_token;
use crate::*;

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

fn check_err<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>, expect: Expect) {
    expect.assert_eq(&r.unwrap_err().to_string());
}

#[test]
fn cidr_parse_and_display() {
    assert_eq!(cidr("10.0.0.0/16").to_string(), "10.0.0.0/16");
    assert_eq!(cidr(" 0.0.0.0/0 ").prefix_len(), 0);
    assert_eq!(cidr("10.1.2.3/32").size(), 1);
    assert_eq!(DEFAULT_VPC_CIDR, cidr("10.0.0.0/16"));
    check_err(
        "10.0.0.1/16".parse::<Ipv4Cidr>(),
        expect![[
            r#"invalid CIDR block "10.0.0.1/16": host bits are set (did you mean 10.0.0.0/16?)"#
        ]],
    );
    check_err(
        "10.0.0.0".parse::<Ipv4Cidr>(),
        expect![[r#"invalid CIDR block "10.0.0.0": expected ADDRESS/LENGTH"#]],
    );
    check_err(
        "10.0.0.0/33".parse::<Ipv4Cidr>(),
        expect![[r#"invalid CIDR block "10.0.0.0/33": the prefix length is above 32"#]],
    );
    check_err(
        "fe80::/10".parse::<Ipv4Cidr>(),
        expect![[r#"invalid CIDR block "fe80::/10": the address is not IPv4"#]],
    );
}

#[test]
fn cidr_contains_and_overlaps() {
    let vpc = cidr("10.0.0.0/16");
    assert!(vpc.contains(&cidr("10.0.3.0/24")));
    assert!(!vpc.contains(&cidr("10.1.0.0/24")));
    assert!(!cidr("10.0.3.0/24").contains(&vpc));
    assert!(vpc.overlaps(&cidr("10.0.3.0/24")));
    assert!(cidr("10.0.3.0/24").overlaps(&vpc));
    assert!(!cidr("10.0.3.0/24").overlaps(&cidr("10.0.4.0/24")));
}

#[test]
fn first_free_block() {
    let vpc = cidr("10.0.0.0/16");
    assert_eq!(vpc.first_free(24, &[]), Some(cidr("10.0.0.0/24")));
    let taken = [cidr("10.0.0.0/24"), cidr("10.0.1.0/25")];
    assert_eq!(vpc.first_free(24, &taken), Some(cidr("10.0.2.0/24")));
    assert_eq!(vpc.first_free(25, &taken), Some(cidr("10.0.1.128/25")));
    assert_eq!(vpc.first_free(20, &taken), Some(cidr("10.0.16.0/20")));
    assert_eq!(vpc.first_free(16, &taken), None);
    assert_eq!(vpc.first_free(8, &[]), None);
    assert_eq!(
        cidr("10.0.0.0/24").first_free(24, &[cidr("10.0.0.0/16")]),
        None
    );
}

proptest! {
    /// The free block is inside the VPC, aligned, clear of every taken block, and no
    /// aligned block before it is free.
    #[test]
    fn first_free_is_first_and_free(
        taken in proptest::collection::vec((0u32..256, 18u8..29), 0..12),
        len in 17u8..29,
    ) {
        let vpc = cidr("10.0.0.0/16");
        let taken: Vec<Ipv4Cidr> = taken
            .into_iter()
            .map(|(n, l)| Ipv4Cidr::masked([10, 0, n as u8, (n * 7) as u8], l))
            .collect();
        let free = |b: &Ipv4Cidr| taken.iter().all(|t| !t.overlaps(b));
        match vpc.first_free(len, &taken) {
            Some(block) => {
                prop_assert!(vpc.contains(&block));
                prop_assert_eq!(block.prefix_len(), len);
                prop_assert!(free(&block));
                let step = block.size() as u32;
                let mut n = u32::from(vpc.network());
                while n < u32::from(block.network()) {
                    let earlier = Ipv4Cidr::new(n.into(), len).unwrap();
                    prop_assert!(!free(&earlier), "{} was free before {}", earlier, block);
                    n += step;
                }
            }
            None => {
                let step = 1u32 << (32 - u32::from(len));
                let mut n = u32::from(vpc.network());
                while n <= u32::from(vpc.network()) + (vpc.size() as u32 - 1) {
                    let b = Ipv4Cidr::new(n.into(), len).unwrap();
                    prop_assert!(!free(&b), "{} is free", b);
                    n += step;
                }
            }
        }
    }
}

#[test]
fn rules_parse() {
    let r = SecurityGroupRule::parse("tcp", "22", "0.0.0.0/0").unwrap();
    assert_eq!(r.to_string(), "tcp 22 from 0.0.0.0/0");
    let r = SecurityGroupRule::parse("TCP", "8000-8100", "same").unwrap();
    assert_eq!(r.to_string(), "tcp 8000-8100 from SAME");
    let r = SecurityGroupRule::parse("-1", "22", "sg-123").unwrap();
    assert_eq!(r.to_string(), "all all from sg-123");
    let r = SecurityGroupRule::parse("udp", "all", "10.1.2.3").unwrap();
    assert_eq!(r.to_string(), "udp 0-65535 from 10.1.2.3/32");
    let r = SecurityGroupRule::parse("icmp", "-1", "SAME").unwrap();
    assert_eq!(r.port_range, PortRange::ALL);
    check_err(
        SecurityGroupRule::parse("gre", "22", "SAME"),
        expect![[r#"invalid protocol "gre": expected tcp, udp, icmp or all"#]],
    );
    check_err(
        SecurityGroupRule::parse("tcp", "90-80", "SAME"),
        expect![[r#"invalid port range "90-80": the first port is above the last"#]],
    );
    check_err(
        SecurityGroupRule::parse("tcp", "70000", "SAME"),
        expect![[r#"invalid port range "70000": ports are 0 to 65535"#]],
    );
    check_err(
        SecurityGroupRule::parse("tcp", "22", "anywhere"),
        expect![[
            r#"invalid rule source "anywhere": expected a CIDR block, SAME or a group id sg-..."#
        ]],
    );
}

#[test]
fn rules_round_trip_through_ec2_permissions() {
    let rules = vec![
        SecurityGroupRule::parse("tcp", "22", "0.0.0.0/0").unwrap(),
        SecurityGroupRule::parse("tcp", "all", "SAME").unwrap(),
        SecurityGroupRule::parse("all", "all", "sg-other").unwrap(),
        SecurityGroupRule::parse("icmp", "8-0", "10.0.0.0/8").unwrap(),
    ];
    let perms: Vec<_> = rules.iter().map(|r| r.to_permission("sg-self")).collect();
    let mut back = SecurityGroupRule::from_permissions(&perms, "sg-self");
    let mut want = rules.clone();
    want.sort();
    back.sort();
    assert_eq!(back, want);
}

#[test]
fn gateway_parse() {
    assert_eq!("internet".parse::<Gateway>().unwrap(), Gateway::Internet);
    assert_eq!("None".parse::<Gateway>().unwrap(), Gateway::None);
    check_err(
        "nat".parse::<Gateway>(),
        expect![[r#"invalid gateway "nat": expected internet or none"#]],
    );
}

fn image_map() -> ImageMap {
    ImageMap::from_json(&serde_json::json!({
        "us-east-1": {
            "ubuntu_jammy": {"ami": "ami-jammy", "sizes": {"small": "t3.small", "big": "m5.large"}},
            "plain": {"ami": "ami-plain"}
        }
    }))
    .unwrap()
}

#[test]
fn images_resolve() {
    let map = image_map();
    let r = map.resolve("us-east-1", "ubuntu_jammy", "small").unwrap();
    assert_eq!(
        (r.image_id.as_str(), r.instance_type.as_str()),
        ("ami-jammy", "t3.small")
    );
    let r = map
        .resolve("us-east-1", "ubuntu_jammy", "c5.xlarge")
        .unwrap();
    assert_eq!(r.instance_type, "c5.xlarge");
    let r = map.resolve("us-east-1", "plain", "medium").unwrap();
    assert_eq!(
        (r.image_id.as_str(), r.instance_type.as_str()),
        ("ami-plain", "t3.medium")
    );
    let r = map.resolve("eu-west-1", "ami-literal", "t3.micro").unwrap();
    assert_eq!(
        (r.image_id.as_str(), r.instance_type.as_str()),
        ("ami-literal", "t3.micro")
    );
    let r = map.resolve("eu-west-1", "ami-literal", "small").unwrap();
    assert_eq!(r.instance_type, "t3.small");
    check_err(
        map.resolve("us-east-1", "ubuntu_jammy", "medium"),
        expect![[
            r#"unknown size "medium" for image "ubuntu_jammy" (known: big, small; or give an instance type such as t3.micro)"#
        ]],
    );
    check_err(
        map.resolve("us-east-1", "centos", "small"),
        expect![[r#"unknown image "centos" in region us-east-1 (known: plain, ubuntu_jammy)"#]],
    );
    check_err(
        map.resolve("eu-west-1", "centos", "small"),
        expect![[r#"the image map has no images for region eu-west-1"#]],
    );
}

#[test]
fn image_map_json() {
    let map = image_map();
    assert_eq!(ImageMap::from_json(&map.to_json()).unwrap(), map);
    check_err(
        ImageMap::from_json(&serde_json::json!({"us-east-1": {"x": {"ami": "ami-1", "size": {}}}})),
        expect!["image map: unknown field `size`, expected one of `ami`, `sizes`, `ssh_user`"],
    );
    check_err(
        ImageMap::from_json(&serde_json::json!({"us-east-1": {"x": {"ami": " "}}})),
        expect![[r#"image map: us-east-1.x.ami is empty"#]],
    );
    assert!(is_instance_type("t3.micro"));
    assert!(is_instance_type("m7g.2xlarge"));
    assert!(!is_instance_type("small"));
    assert!(!is_instance_type("ami-123"));
    assert!(!is_instance_type(".micro"));
}

#[test]
fn client_tokens_are_stable_distinct_and_short() {
    let a = client_token("task-1", "svc", "web", 1, 0);
    assert_eq!(a, client_token("task-1", "svc", "web", 1, 0));
    assert_eq!(a.len(), 64);
    assert!(a.is_ascii());
    for other in [
        client_token("task-2", "svc", "web", 1, 0),
        client_token("task-1", "svc2", "web", 1, 0),
        client_token("task-1", "svc", "web2", 1, 0),
        client_token("task-1", "svc", "web", 2, 0),
        client_token("task-1", "svc", "web", 1, 1),
        // Parts are length-prefixed: moving a boundary changes the token.
        client_token("task-1s", "vc", "web", 1, 0),
    ] {
        assert_ne!(a, other);
    }
}

#[test]
fn credentials_never_show() {
    let creds = StaticCredentials::new("AKIAEXAMPLEKEYID", "wJalrXUtnFEMI/SECRET")
        .with_session_token("SESSIONTOKEN");
    let settings = AwsSettings::new("us-east-1").with_credentials(creds);
    let shown = format!("{settings:?} {settings:#?}");
    for secret in ["AKIAEXAMPLEKEYID", "wJalrXUtnFEMI/SECRET", "SESSIONTOKEN"] {
        assert!(!shown.contains(secret), "{secret} shows in {shown}");
    }
    assert!(shown.contains("<redacted>"));
}
