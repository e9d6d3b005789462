//! Decoding a chunked request body (RFC 9112 section 7.1), a byte at a time
//! if need be.
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! A static-file server has no use for the body: [`Decoder`] only finds
//! where it ends, so that the next pipelined request is parsed from the
//! right byte. It keeps a few words of state and never buffers: each call
//! to [`Decoder::feed`] consumes what it is given (up to the end of the
//! body) and says whether the body is complete, like `httparse`'s
//! `Status::{Complete, Partial}`.
//!
//! It is strict where leniency has been used to smuggle requests past a
//! proxy: a chunk line must end in CRLF (a bare LF is an error), a size is
//! hex digits and nothing else (no sign, no `0x`, no overflow), and the
//! CRLF after a chunk's data must be there. Chunk extensions and trailer
//! fields are skipped, with a bound on their length.

use std::fmt;

/// The longest chunk-size line accepted, extensions included.
pub const MAX_CHUNK_LINE: u32 = 4096;

/// Why a chunked body was rejected. Each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Not a chunked body: a bad or missing size, a size that overflows, a
    /// missing CRLF, a control character in an extension → 400.
    Malformed,
    /// The decoded body is larger than the limit → 413.
    TooLarge,
    /// The trailer section is larger than the head limit → 431.
    TrailerTooLarge,
}

impl ChunkError {
    /// The status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            ChunkError::Malformed => 400,
            ChunkError::TooLarge => 413,
            ChunkError::TrailerTooLarge => 431,
        }
    }
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::Malformed => "malformed chunked body",
            ChunkError::TooLarge => "chunked body too large",
            ChunkError::TrailerTooLarge => "trailer section too large",
        })
    }
}

impl std::error::Error for ChunkError {}

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; `digits` is how many so far.
    Size { value: u64, digits: u32 },
    /// Whitespace after the size, before `;` or CR.
    SizeSpace { value: u64 },
    /// Inside a chunk extension, up to CR.
    Ext { value: u64 },
    /// Saw the CR that ends a size line.
    SizeLf { value: u64 },
    /// Chunk data still to come.
    Data { left: u64 },
    /// Data done; the CR must follow.
    DataCr,
    /// Then the LF.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field line, up to CR.
    TrailerLine,
    /// Saw the CR that ends a trailer line.
    TrailerLf,
    /// Saw the CR of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// An incremental chunked-body decoder (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoder {
    state: State,
    /// Decoded body bytes so far (the sum of the chunk sizes).
    total: u64,
    /// The most decoded bytes allowed ([`ChunkError::TooLarge`] beyond).
    max_body: u64,
    /// The most trailer-section bytes allowed.
    max_trailer: u32,
    /// Bytes of the current size line, or of the trailer section so far.
    line: u32,
}

impl Decoder {
    /// A decoder for a body of at most `max_body` decoded bytes, with a
    /// trailer section of at most `max_trailer` bytes.
    pub fn new(max_body: u64, max_trailer: usize) -> Decoder {
        Decoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            total: 0,
            max_body,
            max_trailer: u32::try_from(max_trailer).unwrap_or(u32::MAX),
            line: 0,
        }
    }

    /// The decoded size of the body so far.
    pub fn decoded(&self) -> u64 {
        self.total
    }

    /// True once the whole body (final CRLF included) has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    // ANCHOR: feed
    /// Consumes body bytes from the start of `input`. Returns how many bytes
    /// were used and whether the body is now complete; when it is, the bytes
    /// after `used` belong to the next request. When it is not, all of
    /// `input` was used. An error is final: answer it and close.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { left } = self.state {
                // Chunk data is skipped in one step, whatever its size.
                let n = left.min((input.len() - i) as u64);
                i += n as usize;
                self.state = if n == left {
                    State::DataCr
                } else {
                    State::Data { left: left - n }
                };
                continue;
            }
            if self.state == State::Done {
                break;
            }
            let b = input[i];
            i += 1;
            self.state = self.step(b)?;
        }
        Ok((i, self.state == State::Done))
    }
    // ANCHOR_END: feed

    /// The state after byte `b` (never called in `Data` or `Done`).
    fn step(&mut self, b: u8) -> Result<State, ChunkError> {
        use State::*;
        let in_size_line = matches!(
            self.state,
            Size { .. } | SizeSpace { .. } | Ext { .. } | SizeLf { .. }
        );
        if in_size_line {
            self.line += 1;
            if self.line > MAX_CHUNK_LINE {
                return Err(ChunkError::Malformed);
            }
        }
        Ok(match self.state {
            Size { value, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    let value = value
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(u64::from(d)))
                        .ok_or(ChunkError::Malformed)?;
                    Size {
                        value,
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(ChunkError::Malformed),
                b' ' | b'\t' => SizeSpace { value },
                b';' => Ext { value },
                b'\r' => SizeLf { value },
                _ => return Err(ChunkError::Malformed),
            },
            SizeSpace { value } => match b {
                b' ' | b'\t' => SizeSpace { value },
                b';' => Ext { value },
                b'\r' => SizeLf { value },
                _ => return Err(ChunkError::Malformed),
            },
            Ext { value } => match b {
                b'\r' => SizeLf { value },
                b'\t' | b' '..=b'~' | 0x80..=0xff => Ext { value },
                _ => return Err(ChunkError::Malformed),
            },
            SizeLf { value } => {
                if b != b'\n' {
                    return Err(ChunkError::Malformed);
                }
                self.line = 0;
                if value == 0 {
                    TrailerStart
                } else {
                    self.total = self
                        .total
                        .checked_add(value)
                        .filter(|&t| t <= self.max_body)
                        .ok_or(ChunkError::TooLarge)?;
                    Data { left: value }
                }
            }
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => Size {
                value: 0,
                digits: 0,
            },
            DataCr | DataLf => return Err(ChunkError::Malformed),
            TrailerStart | TrailerLine | TrailerLf | EndLf => {
                self.line += 1;
                if self.line > self.max_trailer {
                    return Err(ChunkError::TrailerTooLarge);
                }
                match (self.state, b) {
                    (TrailerStart, b'\r') => EndLf,
                    (EndLf, b'\n') => Done,
                    (TrailerStart | TrailerLine, b'\n') => return Err(ChunkError::Malformed),
                    (TrailerLine, b'\r') => TrailerLf,
                    (TrailerStart | TrailerLine, _) => TrailerLine,
                    (TrailerLf, b'\n') => TrailerStart,
                    _ => return Err(ChunkError::Malformed),
                }
            }
            Data { .. } | Done => self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1024;

    /// Feeds `input` in one piece: `Ok(used)` once the body is complete.
    fn decode(input: &[u8]) -> Result<usize, Option<ChunkError>> {
        let mut d = Decoder::new(MAX, 256);
        match d.feed(input) {
            Ok((used, true)) => Ok(used),
            Ok((used, false)) => {
                assert_eq!(used, input.len(), "a partial body uses all its input");
                Err(None)
            }
            Err(e) => Err(Some(e)),
        }
    }

    /// One named case per behaviour: the body, and what decoding it gives
    /// (`Ok(n)`: complete after n bytes; `Err(None)`: needs more;
    /// `Err(Some(e))`: rejected).
    macro_rules! cases {
        ($($name:ident: $input:expr => $expect:expr;)*) => {$(
            #[test]
            fn $name() {
                let input: &[u8] = $input;
                assert_eq!(decode(input), $expect, "{:?}", String::from_utf8_lossy(input));
            }
        )*};
    }

    const BAD: Result<usize, Option<ChunkError>> = Err(Some(ChunkError::Malformed));

    cases! {
        empty_body: b"0\r\n\r\n" => Ok(5);
        one_chunk: b"5\r\nhello\r\n0\r\n\r\n" => Ok(15);
        stops_at_the_end: b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n" => Ok(11);
        two_chunks_hex_sizes: b"a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n" => Ok(35);
        leading_zeros: b"0005\r\nhello\r\n000\r\n\r\n" => Ok(20);
        extensions_are_skipped: b"5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n" => Ok(39);
        whitespace_before_extension: b"5 ;x\r\nhello\r\n0\r\n\r\n" => Ok(18);
        trailers_are_skipped: b"0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n" => Ok(27);
        needs_more: b"5\r\nhel" => Err(None);
        needs_the_final_crlf: b"0\r\n" => Err(None);
        no_size: b"\r\nhello\r\n" => BAD;
        extension_without_size: b";x\r\n" => BAD;
        not_hex: b"g\r\n" => BAD;
        hex_prefix: b"0x5\r\nhello\r\n0\r\n\r\n" => BAD;
        signed_size: b"+5\r\nhello\r\n" => BAD;
        size_overflows: b"10000000000000000\r\n" => BAD;
        bare_lf_after_size: b"5\nhello\r\n0\r\n\r\n" => BAD;
        cr_without_lf: b"5\rhello" => BAD;
        data_longer_than_size: b"3\r\nhello\r\n0\r\n\r\n" => BAD;
        missing_crlf_after_data: b"5\r\nhello0\r\n\r\n" => BAD;
        bare_lf_after_data: b"5\r\nhello\n0\r\n\r\n" => BAD;
        control_in_extension: b"5;a\x01b\r\nhello\r\n" => BAD;
        space_inside_size: b"5 5\r\n" => BAD;
        bare_lf_in_trailer: b"0\r\nX: 1\n\r\n" => BAD;
        cr_not_followed_by_lf_at_end: b"0\r\n\rX" => BAD;
        too_large: b"401\r\n" => Err(Some(ChunkError::TooLarge));
        within_the_limit_needs_more: b"200\r\n" => Err(None);
    }

    #[test]
    fn the_limit_counts_decoded_bytes_across_chunks() {
        let mut d = Decoder::new(10, 256);
        assert_eq!(d.feed(b"6\r\n123456\r\n"), Ok((11, false)));
        assert_eq!(d.decoded(), 6);
        assert_eq!(d.feed(b"4\r\n1234\r\n"), Ok((9, false)));
        assert_eq!(d.feed(b"1\r\n"), Err(ChunkError::TooLarge));
        // Exactly at the limit is allowed.
        let mut d = Decoder::new(10, 256);
        assert_eq!(d.feed(b"a\r\n0123456789\r\n0\r\n\r\n"), Ok((20, true)));
    }

    #[test]
    fn long_size_lines_and_trailers_are_bounded() {
        let mut line = b"1;".to_vec();
        line.resize(MAX_CHUNK_LINE as usize + 1, b'x');
        assert_eq!(
            Decoder::new(MAX, 256).feed(&line),
            Err(ChunkError::Malformed)
        );
        let mut trailer = b"0\r\nX: ".to_vec();
        trailer.resize(300, b'y');
        assert_eq!(
            Decoder::new(MAX, 256).feed(&trailer),
            Err(ChunkError::TrailerTooLarge)
        );
    }

    #[test]
    fn a_huge_chunk_is_skipped_without_buffering() {
        let mut d = Decoder::new(u64::MAX, 256);
        assert_eq!(d.feed(b"ffffffff\r\n"), Ok((10, false)));
        let block = vec![b'z'; 65536];
        for _ in 0..(0xffff_ffff_u64 / 65536) {
            assert_eq!(d.feed(&block), Ok((65536, false)));
        }
        let left = 0xffff_ffff_u64 % 65536;
        assert_eq!(d.feed(&block[..left as usize]), Ok((left as usize, false)));
        assert_eq!(d.feed(b"\r\n0\r\n\r\nNEXT"), Ok((7, true)));
    }

    proptest::proptest! {
        /// Split anywhere, a body decodes to the same outcome as in one
        /// piece: complete at the same byte, or the same error.
        #[test]
        fn splitting_never_changes_the_outcome(
            body in proptest::collection::vec(proptest::sample::select(
                b"0123456789abcdefABCDEFxyz \t;=\"\r\n".to_vec()), 0..80),
            cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let whole = decode(&body);
            let mut d = Decoder::new(MAX, 256);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= body.len()).collect();
            cuts.sort_unstable();
            cuts.push(body.len());
            let mut start = 0;
            let mut used_total = 0;
            let mut split: Result<usize, Option<ChunkError>> = Err(None);
            for end in cuts {
                let piece = &body[start..end.max(start)];
                start = end.max(start);
                match d.feed(piece) {
                    Ok((used, true)) => { split = Ok(used_total + used); break; }
                    Ok((used, false)) => used_total += used,
                    Err(e) => { split = Err(Some(e)); break; }
                }
            }
            proptest::prop_assert_eq!(whole, split);
        }

        /// Any bytes: never a panic, never more bytes used than given.
        #[test]
        fn any_bytes_are_handled(input in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok((used, _)) = Decoder::new(MAX, 256).feed(&input) {
                proptest::prop_assert!(used <= input.len());
            }
        }
    }

    #[test]
    fn every_split_of_a_real_body_decodes() {
        let body =
            b"4;a=b\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nGET";
        let end = body.len() - 3;
        for cut in 0..=body.len() {
            let mut d = Decoder::new(MAX, 256);
            let (a, done_a) = d.feed(&body[..cut]).unwrap();
            let used = if done_a {
                a
            } else {
                let (b, done_b) = d.feed(&body[cut..]).unwrap();
                assert!(done_b, "cut at {cut}");
                a + b
            };
            assert_eq!(used, end, "cut at {cut}");
            assert_eq!(d.decoded(), 4 + 6 + 14);
        }
    }
}
