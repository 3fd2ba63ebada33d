//! What the fuzz targets share: where the reads of a fuzzed byte stream end.

/// `bytes` cut into up to nine pieces at points picked from the bytes themselves (so an input
/// always splits the same way, and a crash reproduces from the input alone).
pub fn pieces(bytes: &[u8]) -> Vec<&[u8]> {
    let mut dice = Dice::of(bytes);
    let mut cuts: Vec<usize> = (0..dice.roll(9))
        .map(|_| dice.roll(bytes.len() as u64 + 1) as usize)
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        pieces.push(&bytes[start..cut]);
        start = cut;
    }
    pieces.push(&bytes[start..]);
    pieces
}

/// A small deterministic generator (xorshift), seeded with a hash of the input.
struct Dice(u64);

impl Dice {
    fn of(bytes: &[u8]) -> Self {
        // FNV-1a.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self(hash | 1)
    }

    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}
