//! The image map of `aws/network`'s `images` component: region → logical image name →
//! `{ami, sizes}`, given explicitly or filled by describe-images name filters, and the
//! resolution of a node's `image` and `size` against it.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use serde::{Deserialize, Serialize};

use crate::client::Ec2;
use crate::error::{AwsError, ImageError};

/// Logical sizes known for every image whose map entry names none (and for literal AMI
/// ids): `micro`, `small`, `medium`, `large`, `xlarge` of the `t3` family.
pub const DEFAULT_SIZES: &[(&str, &str)] = &[
    ("micro", "t3.micro"),
    ("small", "t3.small"),
    ("medium", "t3.medium"),
    ("large", "t3.large"),
    ("xlarge", "t3.xlarge"),
];

/// Region → logical image name → image, as the `images` attribute writes it:
///
/// ```yaml
/// us-east-1:
///   ubuntu_jammy: {ami: ami-0abc, sizes: {small: t3.small, large: m5.large}}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageMap {
    /// The images of each region.
    pub regions: BTreeMap<String, BTreeMap<String, ImageEntry>>,
}

/// One logical image of a region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// The AMI id.
    pub ami: String,
    /// Logical size → instance type. Empty means [`DEFAULT_SIZES`].
    #[serde(default)]
    pub sizes: BTreeMap<String, String>,
    /// The user to log in as over SSH (`ubuntu`, `ec2-user`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_user: Option<String>,
}

/// A node's image and size made concrete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The AMI id.
    pub image_id: String,
    /// The instance type.
    pub instance_type: String,
}

impl ImageMap {
    /// The map written as a JSON value (the `images` attribute).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, ImageError> {
        let map: ImageMap =
            serde_json::from_value(value.clone()).map_err(|e| ImageError::BadMap {
                reason: e.to_string(),
            })?;
        for (region, images) in &map.regions {
            for (name, entry) in images {
                if entry.ami.trim().is_empty() {
                    return Err(ImageError::BadMap {
                        reason: format!("{region}.{name}.ami is empty"),
                    });
                }
            }
        }
        Ok(map)
    }

    /// The map as a JSON value.
    pub fn to_json(&self) -> serde_json::Value {
        // A map of strings always serializes.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Adds (or replaces) one image.
    pub fn insert(
        &mut self,
        region: impl Into<String>,
        name: impl Into<String>,
        entry: ImageEntry,
    ) {
        self.regions
            .entry(region.into())
            .or_default()
            .insert(name.into(), entry);
    }

    /// Adds every image of `other`, replacing those of the same region and name.
    pub fn merge(&mut self, other: ImageMap) {
        for (region, images) in other.regions {
            self.regions.entry(region).or_default().extend(images);
        }
    }

    /// The entry of logical image `image` in `region`, if the map has one.
    pub fn entry(&self, region: &str, image: &str) -> Option<&ImageEntry> {
        self.regions.get(region)?.get(image)
    }

    /// Resolves a node's `image` (a logical name of the region's map, or a literal
    /// `ami-...`) and `size` (a logical size of that image, or a literal instance type such
    /// as `t3.micro`).
    pub fn resolve(
        &self,
        region: &str,
        image: &str,
        size: &str,
    ) -> Result<ResolvedImage, ImageError> {
        let (image_id, sizes) = if image.starts_with("ami-") {
            (image.to_owned(), None)
        } else {
            let images = self
                .regions
                .get(region)
                .ok_or_else(|| ImageError::UnknownRegion {
                    region: region.to_owned(),
                })?;
            let entry = images.get(image).ok_or_else(|| ImageError::UnknownImage {
                region: region.to_owned(),
                image: image.to_owned(),
                known: join(images.keys().map(String::as_str)),
            })?;
            (
                entry.ami.clone(),
                Some(&entry.sizes).filter(|s| !s.is_empty()),
            )
        };
        let instance_type = match sizes {
            Some(sizes) => sizes.get(size).cloned(),
            None => DEFAULT_SIZES
                .iter()
                .find(|(k, _)| *k == size)
                .map(|(_, v)| (*v).to_owned()),
        };
        let instance_type = match instance_type {
            Some(t) => t,
            None if is_instance_type(size) => size.to_owned(),
            None => {
                let known = match sizes {
                    Some(sizes) => join(sizes.keys().map(String::as_str)),
                    None => join(DEFAULT_SIZES.iter().map(|(k, _)| *k)),
                };
                return Err(ImageError::UnknownSize {
                    image: image.to_owned(),
                    size: size.to_owned(),
                    known,
                });
            }
        };
        Ok(ResolvedImage {
            image_id,
            instance_type,
        })
    }
}

/// Whether `s` looks like an EC2 instance type (`FAMILY.SIZE`, e.g. `t3.micro`,
/// `m7g.2xlarge`).
pub fn is_instance_type(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match s.split_once('.') {
        Some((family, size)) => {
            ok(family) && ok(size) && family.starts_with(|c: char| c.is_ascii_lowercase())
        }
        None => false,
    }
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// A logical image to fill from describe-images: the newest available image whose name
/// matches `name_pattern`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageFilter {
    /// The logical name, e.g. `ubuntu_jammy`.
    pub name: String,
    /// The image name pattern (`*` and `?` wildcards), e.g.
    /// `ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*`.
    pub name_pattern: String,
    /// Only images of these owners (account ids or `amazon`, `self`); any when empty.
    pub owners: Vec<String>,
    /// Only images of this architecture (`x86_64`, `arm64`).
    pub architecture: Option<String>,
    /// The logical sizes of the image's entry.
    pub sizes: BTreeMap<String, String>,
    /// The SSH login user of the image's entry.
    pub ssh_user: Option<String>,
}

/// An image found by describe-images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The AMI id.
    pub image_id: String,
    /// Its name.
    pub name: String,
    /// When it was made (ISO 8601), if EC2 said.
    pub creation_date: Option<String>,
}

impl Ec2 {
    /// The newest available image of this region matching `filter`.
    pub async fn find_image(&self, filter: &ImageFilter) -> Result<ImageInfo, AwsError> {
        let mut req = self
            .client
            .describe_images()
            .filters(
                Filter::builder()
                    .name("name")
                    .values(&filter.name_pattern)
                    .build(),
            )
            .filters(Filter::builder().name("state").values("available").build());
        if let Some(arch) = &filter.architecture {
            req = req.filters(Filter::builder().name("architecture").values(arch).build());
        }
        for owner in &filter.owners {
            req = req.owners(owner);
        }
        let out = {
            let _p = self.permit().await?;
            req.send().await.map_err(|e| {
                AwsError::api(
                    "DescribeImages",
                    format!("images named {:?}", filter.name_pattern),
                    e,
                )
            })?
        };
        let newest = out
            .images()
            .iter()
            .filter_map(|i| {
                Some(ImageInfo {
                    image_id: i.image_id()?.to_owned(),
                    name: i.name().unwrap_or_default().to_owned(),
                    creation_date: i.creation_date().map(str::to_owned),
                })
            })
            .max_by(|a, b| (&a.creation_date, &a.name).cmp(&(&b.creation_date, &b.name)));
        newest.ok_or_else(|| {
            ImageError::NoMatch {
                region: self.region.clone(),
                image: filter.name.clone(),
                pattern: filter.name_pattern.clone(),
            }
            .into()
        })
    }

    /// The image map of this region filled from `filters`: each logical image is the
    /// newest match of its filter.
    pub async fn resolve_image_filters(
        &self,
        filters: &[ImageFilter],
    ) -> Result<ImageMap, AwsError> {
        let mut map = ImageMap::default();
        for f in filters {
            let image = self.find_image(f).await?;
            tracing::debug!(name = %f.name, image_id = %image.image_id, image_name = %image.name, "resolved image");
            map.insert(
                &self.region,
                &f.name,
                ImageEntry {
                    ami: image.image_id,
                    sizes: f.sizes.clone(),
                    ssh_user: f.ssh_user.clone(),
                },
            );
        }
        Ok(map)
    }
}
