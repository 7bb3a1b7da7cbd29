//! Byte-level BPE in plain Rust: no Python types in this file, so `cargo test` exercises it directly.
//!
//! The pipeline has three steps:
//! 1. `count_chunks`: split every text with the regex pattern into "chunks" (roughly: words with their
//!    leading space, numbers, punctuation runs, whitespace) and count how often each distinct chunk
//!    occurs. BPE never merges across chunk boundaries, so from here on the text is just a multiset
//!    of chunks; a 50 MB corpus shrinks to a few hundred thousand distinct chunks.
//! 2. `Trainer`: every distinct chunk becomes a "word", a list of token ids (starting as its UTF-8
//!    bytes 0..=255) with a weight (its count). Repeatedly find the most frequent adjacent pair of
//!    ids, give it the next id (256, 257, ...) and replace it everywhere. The clever part is doing
//!    this incrementally instead of recounting every pair after each merge (see `Trainer`).
//! 3. `encode_chunk`: to encode new text, split it the same way and, inside each chunk, replay the
//!    merges: repeatedly merge the adjacent pair that was learned earliest (lowest id).

use ahash::AHashMap;
use fancy_regex::Regex;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The GPT-4 (tiktoken `cl100k_base`) split pattern, in the 7-alternative form: contractions,
/// letters with an optional leading non-letter, digit runs of 1-3, punctuation runs, newlines,
/// trailing whitespace, other whitespace. `?+` and `++` are possessive quantifiers (never give back
/// characters), which is why we need `fancy-regex` rather than the `regex` crate.
pub const GPT4_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// nanochat's pattern: GPT-4's with digit runs of 1-2 instead of 1-3 (fewer number tokens wasted
/// in a small vocabulary; validated at vocab 32K).
pub const NANOCHAT_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// Two adjacent token ids.
pub type Pair = (u32, u32);

// ------------------------------------------------------------------------------------------------
// 1. Splitting and counting chunks

/// Split every text with `re` and count the distinct chunks, in parallel over the texts: each rayon
/// worker fills its own hash map (no locking), then the maps are merged pairwise. The keys borrow
/// from `texts`, so no chunk is copied here. (A single huge text is split by one thread only: the
/// parallelism is across texts, which is why training takes an iterator of documents.)
pub fn count_chunks<'t, S: AsRef<str> + Sync>(
    texts: &'t [S],
    re: &Regex,
) -> Result<AHashMap<&'t str, i64>, fancy_regex::Error> {
    texts
        .par_iter()
        .try_fold(AHashMap::new, |mut counts: AHashMap<&'t str, i64>, text| {
            for m in re.find_iter(text.as_ref()) {
                *counts.entry(m?.as_str()).or_insert(0) += 1;
            }
            Ok(counts)
        })
        .try_reduce(AHashMap::new, |a, b| {
            // add the smaller map into the bigger one
            let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
            for (chunk, n) in small {
                *big.entry(chunk).or_insert(0) += n;
            }
            Ok(big)
        })
}

// ------------------------------------------------------------------------------------------------
// 2. Training

/// Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right without overlap
/// ("aaaa" with pair (a, a) -> "XX", "aaa" -> "Xa"). When `deltas` is given, push the change in this
/// word's pair counts, one +1/-1 per affected pair occurrence. For an occurrence `left a b right`:
///   (left, a) -1, (left, new) +1, (a, b) -1, (b, right) -1, (new, right) +1.
/// `left` is read from the output written so far, so two occurrences in a row chain correctly:
/// in "abab" the second occurrence sees left = X (the first merge), not b.
pub fn merge_pair(ids: &mut Vec<u32>, pair: Pair, new_id: u32, mut deltas: Option<&mut Vec<(Pair, i64)>>) {
    let (a, b) = pair;
    let n = ids.len();
    let (mut read, mut write) = (0, 0); // in-place compaction: write <= read always
    while read < n {
        if read + 1 < n && ids[read] == a && ids[read + 1] == b {
            if let Some(d) = deltas.as_deref_mut() {
                if write > 0 {
                    let left = ids[write - 1];
                    d.push(((left, a), -1));
                    d.push(((left, new_id), 1));
                }
                d.push(((a, b), -1));
                if read + 2 < n {
                    let right = ids[read + 2];
                    d.push(((b, right), -1));
                    d.push(((new_id, right), 1));
                }
            }
            ids[write] = new_id;
            read += 2;
        } else {
            ids[write] = ids[read];
            read += 1;
        }
        write += 1;
    }
    ids.truncate(write);
}

/// A heap entry: "`pair` had `count` occurrences when this entry was pushed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    count: i64,
    pair: Pair,
}

impl Ord for Candidate {
    /// Max-heap order: the higher count wins; on a tie the *smaller* pair (a, b) wins, so the result
    /// never depends on hash-map iteration order or thread scheduling.
    fn cmp(&self, other: &Self) -> Ordering {
        self.count.cmp(&other.count).then_with(|| other.pair.cmp(&self.pair))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Incremental BPE training.
///
/// The naive algorithm recounts all pairs in all words for every merge: O(corpus x merges). Here
/// instead we keep
/// * `pair_counts`: the current weighted count of every pair, kept exact by applying only the
///   local deltas of the words a merge touches (times the word's count);
/// * `positions`: for every pair, the words it occurs in, so a merge visits only those words;
/// * `heap`: a max-heap of (count, pair) candidates. Counts change all the time, and updating
///   entries inside a binary heap is awkward, so we use *lazy refresh*: a popped entry whose count
///   is stale is pushed back with its current count. This is correct because a pair's count only
///   ever goes down after the merge that created it (a merge can only create pairs that contain
///   its own new id), so every stored count is an upper bound of the true one: when the top entry
///   is up to date, no other pair can beat it.
///
/// `positions` is never cleaned: a word that no longer contains a pair is simply a no-op when
/// merged (and, by the argument above, a pair never gains new words after it is created).
pub struct Trainer {
    words: Vec<Vec<u32>>,
    counts: Vec<i64>,
    pair_counts: AHashMap<Pair, i64>,
    positions: AHashMap<Pair, Vec<u32>>, // word indices (u32: halves memory; < 4 billion chunks)
    heap: BinaryHeap<Candidate>,
    merges: Vec<Pair>, // merges[i] created token id 256 + i
}

impl Trainer {
    /// Start from distinct chunks and their counts. The order does not matter: ties are broken by
    /// pair value, never by position.
    pub fn new<S: AsRef<str>>(chunk_counts: impl IntoIterator<Item = (S, i64)>) -> Self {
        let (words, counts): (Vec<Vec<u32>>, Vec<i64>) = chunk_counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(chunk, n)| (chunk.as_ref().bytes().map(u32::from).collect(), n))
            .unzip();
        assert!(words.len() < u32::MAX as usize, "too many distinct chunks");

        // Initial pair counts and positions, in parallel over words; each worker builds its own
        // maps, which are then merged (a word belongs to exactly one worker, so the positions
        // lists never get duplicates).
        let (pair_counts, positions) = (0..words.len())
            .into_par_iter()
            .fold(
                || (AHashMap::new(), AHashMap::new()),
                |(mut pc, mut pos): (AHashMap<Pair, i64>, AHashMap<Pair, Vec<u32>>), w| {
                    for pair in words[w].windows(2).map(|p| (p[0], p[1])) {
                        *pc.entry(pair).or_insert(0) += counts[w];
                        let list = pos.entry(pair).or_insert_with(Vec::new);
                        if list.last() != Some(&(w as u32)) {
                            list.push(w as u32); // a pair seen twice in one word is listed once
                        }
                    }
                    (pc, pos)
                },
            )
            .reduce(
                || (AHashMap::new(), AHashMap::new()),
                |(mut pc, mut pos), (pc2, pos2)| {
                    for (pair, n) in pc2 {
                        *pc.entry(pair).or_insert(0) += n;
                    }
                    for (pair, list) in pos2 {
                        pos.entry(pair).or_insert_with(Vec::new).extend(list);
                    }
                    (pc, pos)
                },
            );
        let heap = pair_counts.iter().map(|(&pair, &count)| Candidate { count, pair }).collect();
        Trainer { words, counts, pair_counts, positions, heap, merges: Vec::new() }
    }

    /// Do one merge: the most frequent pair (ties: the smallest pair) becomes id 256 + merges so far.
    /// Returns the merged pair and its count, or None if no adjacent pair is left.
    pub fn step(&mut self) -> Option<(Pair, i64)> {
        // pop until the top entry is up to date (lazy refresh, see the struct docs)
        let top = loop {
            let cand = self.heap.pop()?;
            let current = self.pair_counts.get(&cand.pair).copied().unwrap_or(0);
            if current == cand.count {
                break cand;
            }
            if current > 0 {
                self.heap.push(Candidate { count: current, pair: cand.pair });
            }
        };
        let new_id = 256 + self.merges.len() as u32;
        self.merges.push(top.pair);

        // Merge in every word that (may) contain the pair, applying each word's deltas times its
        // count. Pairs that gain occurrences always contain new_id, so they are brand new: collect
        // their words and give them a heap entry once all words are done.
        let word_list = self.positions.remove(&top.pair).unwrap_or_default();
        let mut deltas = Vec::new();
        let mut new_pairs = Vec::new();
        for w in word_list {
            deltas.clear();
            merge_pair(&mut self.words[w as usize], top.pair, new_id, Some(&mut deltas));
            let count = self.counts[w as usize];
            for &(pair, d) in &deltas {
                *self.pair_counts.entry(pair).or_insert(0) += d * count;
                if d > 0 {
                    let list = self.positions.entry(pair).or_insert_with(|| {
                        new_pairs.push(pair);
                        Vec::new()
                    });
                    if list.last() != Some(&w) {
                        list.push(w);
                    }
                }
            }
        }
        self.pair_counts.remove(&top.pair); // now 0 for good: the pair can never re-form
        for pair in new_pairs {
            let count = self.pair_counts[&pair];
            if count > 0 {
                self.heap.push(Candidate { count, pair });
            }
        }
        Some((top.pair, top.count))
    }

    /// Run up to `n_merges` merges and return them in id order. Returns fewer only when every
    /// word has become a single token (no pair left to merge).
    pub fn train(mut self, n_merges: usize) -> Vec<Pair> {
        while self.merges.len() < n_merges && self.step().is_some() {}
        self.merges
    }

    pub fn merges(&self) -> &[Pair] {
        &self.merges
    }

    /// Recount all pairs from scratch (what the naive algorithm does every step): for tests.
    pub fn recount(&self) -> AHashMap<Pair, i64> {
        let mut pc = AHashMap::new();
        for (ids, &n) in self.words.iter().zip(&self.counts) {
            for p in ids.windows(2) {
                *pc.entry((p[0], p[1])).or_insert(0) += n;
            }
        }
        pc
    }

    /// The incrementally maintained counts, without the pairs that dropped to 0: for tests.
    pub fn pair_counts(&self) -> AHashMap<Pair, i64> {
        self.pair_counts.iter().filter(|(_, &n)| n != 0).map(|(&p, &n)| (p, n)).collect()
    }
}

// ------------------------------------------------------------------------------------------------
// 3. Using the merges

/// The bytes of every token: ids 0..=255 are the single bytes, merge i (id 256 + i) is the
/// concatenation of its two parents. This is the `mergeable_ranks` table tiktoken needs.
pub fn token_bytes(merges: &[Pair]) -> Vec<Vec<u8>> {
    let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for &(a, b) in merges {
        let bytes = [vocab[a as usize].as_slice(), vocab[b as usize].as_slice()].concat();
        vocab.push(bytes);
    }
    vocab
}

/// Encode one chunk: start from its bytes and repeatedly merge the adjacent pair with the lowest
/// merge id, until no adjacent pair is a known merge. `ranks` maps pair -> merged token id.
/// (Merging every occurrence of the best pair at once is the same as merging them one by one,
/// because any pair containing the new token was learned later, so has a higher id.)
pub fn encode_chunk(chunk: &str, ranks: &AHashMap<Pair, u32>) -> Vec<u32> {
    let mut ids: Vec<u32> = chunk.bytes().map(u32::from).collect();
    while ids.len() >= 2 {
        let best =
            ids.windows(2).filter_map(|p| ranks.get(&(p[0], p[1])).map(|&id| (id, (p[0], p[1])))).min();
        match best {
            Some((new_id, pair)) => merge_pair(&mut ids, pair, new_id, None),
            None => break,
        }
    }
    ids
}

/// Encode a whole text: split with the same regex used in training, encode each chunk.
pub fn encode(text: &str, re: &Regex, ranks: &AHashMap<Pair, u32>) -> Result<Vec<u32>, fancy_regex::Error> {
    let mut ids = Vec::with_capacity(text.len() / 3);
    for m in re.find_iter(text) {
        ids.extend(encode_chunk(m?.as_str(), ranks));
    }
    Ok(ids)
}

/// pair -> merged id lookup table for `encode`.
pub fn merge_ranks(merges: &[Pair]) -> AHashMap<Pair, u32> {
    merges.iter().enumerate().map(|(i, &pair)| (pair, 256 + i as u32)).collect()
}

// ------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook algorithm, as slow and obvious as possible: every chunk occurrence is its own
    /// word, and every step recounts every pair.
    fn naive_train(texts: &[&str], re: &Regex, n_merges: usize) -> Vec<Pair> {
        let mut words: Vec<Vec<u32>> = Vec::new();
        for text in texts {
            for m in re.find_iter(text) {
                words.push(m.unwrap().as_str().bytes().map(u32::from).collect());
            }
        }
        let mut merges = Vec::new();
        for i in 0..n_merges {
            let mut counts: AHashMap<Pair, i64> = AHashMap::new();
            for w in &words {
                for p in w.windows(2) {
                    *counts.entry((p[0], p[1])).or_insert(0) += 1;
                }
            }
            // highest count, then smallest pair
            let Some((&pair, _)) = counts.iter().max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0))) else {
                break;
            };
            for w in words.iter_mut() {
                merge_pair(w, pair, 256 + i as u32, None);
            }
            merges.push(pair);
        }
        merges
    }

    fn train_texts(texts: &[&str], re: &Regex, n_merges: usize) -> Vec<Pair> {
        Trainer::new(count_chunks(texts, re).unwrap()).train(n_merges)
    }

    /// a few KB of varied English-like text with numbers, punctuation, repeats and whitespace
    fn sample_text() -> String {
        let base = "The quick brown fox jumps over the lazy dog. It's 2024, isn't it? \
                    Numbers: 12345 678 9 and 3.14159; code: fn main() { let x = 42; }\n\n\
                    Then the dog   barked at the fox, and the fox ran away!!! THE END.\n";
        let mut s = String::new();
        for i in 0..40 {
            s.push_str(base);
            s.push_str(&format!("line {i} of {}: {}\n", 40, "ab".repeat(i % 7)));
        }
        s
    }

    #[test]
    fn classic_example() {
        // Wikipedia's "aaabdaaabac" (one chunk, since the pattern keeps letters together).
        // pairs: aa:4 ab:2 bd:1 da:1 ba:1 ac:1 -> merge (a,a)=256 -> "X a b d X a b a c"
        // pairs: Xa:2 ab:2 ... -> tie between (256,97) and (97,98): the smaller pair (97,98) wins
        // -> 257 = "ab": "X 257 d X 257 a c" -> (256,257) has count 2 -> 258 = "aaab"
        let re = Regex::new(GPT4_PATTERN).unwrap();
        let merges = train_texts(&["aaabdaaabac"], &re, 3);
        assert_eq!(merges, vec![(97, 97), (97, 98), (256, 257)]);
        let vocab = token_bytes(&merges);
        assert_eq!(vocab[258], b"aaab".to_vec());
        let ids = encode("aaabdaaabac", &re, &merge_ranks(&merges)).unwrap();
        assert_eq!(ids, vec![258, 100, 258, 97, 99]);
    }

    #[test]
    fn merge_pair_deltas() {
        // the deltas of a word must equal the difference of its pair counts before/after
        for (word, pair) in [("abab", (97, 98)), ("aaaa", (97, 97)), ("aaa", (97, 97)), ("xaabaay", (97, 97))]
        {
            let mut ids: Vec<u32> = word.bytes().map(u32::from).collect();
            let count = |ids: &Vec<u32>| {
                let mut c: AHashMap<Pair, i64> = AHashMap::new();
                ids.windows(2).for_each(|p| *c.entry((p[0], p[1])).or_insert(0) += 1);
                c
            };
            let mut expected = count(&ids);
            let mut deltas = Vec::new();
            merge_pair(&mut ids, pair, 999, Some(&mut deltas));
            for (p, d) in deltas {
                *expected.entry(p).or_insert(0) += d;
            }
            expected.retain(|_, n| *n != 0);
            assert_eq!(expected, count(&ids), "word {word}");
        }
        let mut ids = vec![97, 97, 97, 97, 97];
        merge_pair(&mut ids, (97, 97), 300, None);
        assert_eq!(ids, vec![300, 300, 97]);
    }

    #[test]
    fn matches_naive_trainer() {
        let text = sample_text();
        for pattern in [GPT4_PATTERN, NANOCHAT_PATTERN] {
            let re = Regex::new(pattern).unwrap();
            let fast = train_texts(&[&text], &re, 60);
            assert_eq!(fast.len(), 60);
            assert_eq!(fast, naive_train(&[&text], &re, 60));
        }
    }

    #[test]
    fn incremental_counts_equal_recount() {
        let text = sample_text();
        let re = Regex::new(GPT4_PATTERN).unwrap();
        let mut trainer = Trainer::new(count_chunks(&[text.as_str()], &re).unwrap());
        for _ in 0..80 {
            let (_, count) = trainer.step().unwrap();
            assert!(count > 0);
            assert_eq!(trainer.pair_counts(), trainer.recount());
        }
    }

    #[test]
    fn tie_break_and_determinism() {
        // every pair occurs exactly once: the merges go in ascending pair order
        let re = Regex::new(GPT4_PATTERN).unwrap();
        let merges = train_texts(&["dcba"], &re, 1);
        assert_eq!(merges, vec![(98, 97)]);
        // the same documents in any order, on any number of threads, give the same merges
        let text = sample_text();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut reversed = lines.clone();
        reversed.reverse();
        let reference = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| train_texts(&lines, &re, 100));
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                assert_eq!(train_texts(&lines, &re, 100), reference);
                assert_eq!(train_texts(&reversed, &re, 100), reference);
            });
        }
    }

    #[test]
    fn stops_when_no_pair_left() {
        let re = Regex::new(GPT4_PATTERN).unwrap();
        // chunks "ab" and " ab": 2 merges possible at most ((97,98) then (32,256))
        let merges = train_texts(&["ab ab"], &re, 10);
        assert_eq!(merges, vec![(97, 98), (32, 256)]);
    }

    #[test]
    fn encode_round_trip_and_merge_order() {
        let text = sample_text();
        let re = Regex::new(NANOCHAT_PATTERN).unwrap();
        let merges = train_texts(&[&text], &re, 120);
        let ranks = merge_ranks(&merges);
        let vocab = token_bytes(&merges);
        for probe in [text.as_str(), "", "x", "héllo wörld 🙃 12345\r\n\t  end", "the fox"] {
            let ids = encode(probe, &re, &ranks).unwrap();
            let bytes: Vec<u8> = ids.iter().flat_map(|&i| vocab[i as usize].clone()).collect();
            assert_eq!(bytes, probe.as_bytes());
        }
        // the training text compresses; no adjacent pair in the output is a known merge that
        // would have applied (every chunk is fully merged)
        let ids = encode(&text, &re, &ranks).unwrap();
        assert!(ids.len() * 2 < text.len());
        for m in re.find_iter(&text) {
            let chunk_ids = encode_chunk(m.unwrap().as_str(), &ranks);
            assert!(chunk_ids.windows(2).all(|p| !ranks.contains_key(&(p[0], p[1]))));
        }
        // merge order matters: the lowest id goes first. With merges "ab"=256 then "bc"=257,
        // "abc" is [256, 'c'], not ['a', 257].
        let ranks = merge_ranks(&[(97, 98), (98, 99)]);
        assert_eq!(encode_chunk("abc", &ranks), vec![256, 99]);
        let ranks = merge_ranks(&[(98, 99), (97, 98)]);
        assert_eq!(encode_chunk("abc", &ranks), vec![97, 256]);
    }
}
