//! A recording's file: a WAV header, then frames appended as they become final, the sizes patched
//! in at the end and the `.part` name dropped.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Space is reserved ahead in steps this large: one extent per step instead of the file system
/// finding room for every write (and a file that stays in one piece while hundreds grow at once).
const RESERVE: u64 = 1 << 20;
/// A WAV's sizes are 32-bit: audio past this is not kept (about 12 h at 24 kHz).
const MAX_DATA: u64 = (u32::MAX as u64 - 64) / 4 * 4;

pub(super) struct WavFile {
    file: File,
    part: PathBuf,
    path: PathBuf,
    header_len: u64,
    data_len: u64,
    reserved: u64,
}

impl WavFile {
    pub(super) fn create(path: PathBuf, rate: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            private_dirs(dir)?;
        }
        let part = path.with_extension("wav.part");
        let header = wav_header(rate)?;
        // Call audio: readable by the gateway's user only, whatever the umask.
        let mut file = private_file(&part)?;
        file.write_all(&header)?;
        let header_len = header.len() as u64;
        Ok(Self { file, part, path, header_len, data_len: 0, reserved: header_len })
    }

    /// Appends rendered frames. False once the file is full: what did not fit is not kept.
    pub(super) fn append(&mut self, frames: &[u8]) -> io::Result<bool> {
        let room = (MAX_DATA - self.data_len) as usize;
        let frames = &frames[..frames.len().min(room)];
        self.reserve(self.header_len + self.data_len + frames.len() as u64);
        self.file.write_all(frames)?;
        self.data_len += frames.len() as u64;
        Ok(self.data_len < MAX_DATA)
    }

    fn reserve(&mut self, upto: u64) {
        #[cfg(target_os = "linux")]
        if upto > self.reserved {
            let step = (upto - self.reserved).div_ceil(RESERVE) * RESERVE;
            // Only an optimisation: a file system that can't reserve just allocates as it goes.
            if rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), self.reserved, step).is_ok() {
                self.reserved += step;
            } else {
                self.reserved = u64::MAX;
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (upto, RESERVE);
    }

    /// The sizes in the header, the reserved space beyond the audio given back, the final name;
    /// a file that can't be completed goes.
    pub(super) fn finish(self) -> io::Result<()> {
        let part = self.part.clone();
        self.complete().inspect_err(|_| {
            let _ = std::fs::remove_file(part);
        })
    }

    fn complete(mut self) -> io::Result<()> {
        let data = u32::try_from(self.data_len).map_err(|_| io::Error::other("recording over 4 GiB"))?;
        let riff = u32::try_from(self.header_len - 8 + self.data_len).unwrap_or(u32::MAX);
        self.file.set_len(self.header_len + self.data_len)?;
        self.file.seek(SeekFrom::Start(4))?;
        self.file.write_all(&riff.to_le_bytes())?;
        self.file.seek(SeekFrom::Start(self.header_len - 4))?;
        self.file.write_all(&data.to_le_bytes())?;
        self.file.flush()?;
        drop(self.file);
        std::fs::rename(&self.part, &self.path)
    }

    /// The recording is abandoned: its half-written file goes.
    pub(super) fn remove(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.part);
    }
}

fn private_file(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

pub(super) fn private_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The WAV header hound writes for an empty stereo 16-bit file: the sizes in it are patched when
/// the call ends (the data is written straight to the file, a batch at a time).
fn wav_header(rate: u32) -> io::Result<Vec<u8>> {
    let spec =
        hound::WavSpec { channels: 2, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut header = io::Cursor::new(Vec::new());
    hound::WavWriter::new(&mut header, spec).and_then(hound::WavWriter::finalize).map_err(to_io)?;
    Ok(header.into_inner())
}

fn to_io(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::WavFile;
    use crate::media::recording::tape::{Budget, Tape};

    #[test]
    fn a_file_is_exactly_its_header_and_frames_whatever_was_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2026-12-06/call.wav");
        let mut file = WavFile::create(path.clone(), 8000).unwrap();
        let mut tape = Tape::new(8000, Budget::new(1 << 20));
        let caller: Vec<u8> = (0..6000i16).flat_map(|s| s.to_le_bytes()).collect();
        tape.caller(0, caller, 0);
        tape.bot(1000, 0, (0..2000i16).flat_map(|s| (-s).to_le_bytes()).collect(), 0);
        let mut frames = Vec::new();
        for n in [2500, 3500] {
            frames.clear();
            tape.render(n, &mut frames);
            assert!(file.append(&frames).unwrap());
        }
        file.finish().unwrap();
        assert!(!dir.path().join("2026-12-06/call.wav.part").exists());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 6000 * 4, "the reserved space is given back");
        let mut wav = hound::WavReader::open(&path).unwrap();
        assert_eq!((wav.spec().channels, wav.spec().sample_rate, wav.duration()), (2, 8000, 6000));
        let s: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
        for i in [0usize, 999, 1000, 2999, 3000, 5999] {
            let bot = if (1000..3000).contains(&i) { -(i as i16 - 1000) } else { 0 };
            assert_eq!((s[2 * i], s[2 * i + 1]), (i as i16, bot), "frame {i}");
        }
    }
}
