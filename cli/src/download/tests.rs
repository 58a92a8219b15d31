//! Tests of the download pieces: safe output names, `.part` files, the order and fit of
//! chunks, resuming, the sink's saving and hashing, verification messages and progress lines.

use super::*;

#[test]
fn names_inside_the_folder_are_accepted() {
    assert_eq!(safe_relative("out.csv").unwrap(), PathBuf::from("out.csv"));
    assert_eq!(
        safe_relative("parts/2026/a.csv").unwrap(),
        PathBuf::from("parts/2026/a.csv")
    );
    assert_eq!(
        safe_relative("..hidden").unwrap(),
        PathBuf::from("..hidden")
    );
    assert_eq!(safe_relative("a..b").unwrap(), PathBuf::from("a..b"));
}

#[test]
fn names_escaping_the_folder_are_refused() {
    for bad in [
        "",
        "/etc/passwd",
        "../escape.txt",
        "parts/../../x",
        "parts/..",
        "./out.csv",
        "a//b",
        "dir/",
        "a\\..\\b",
        "nul\0byte",
    ] {
        assert!(safe_relative(bad).is_err(), "{bad:?} was accepted");
    }
    assert_eq!(
        safe_relative("../escape.txt").unwrap_err(),
        "the name has a '.' or '..' part"
    );
}

#[test]
fn part_files_sit_beside_their_destination() {
    assert_eq!(
        part_path(Path::new("/tmp/x/parts/a.csv")),
        PathBuf::from("/tmp/x/parts/a.csv.part")
    );
}

#[test]
fn chunks_must_come_in_order_and_fit() {
    let mut r = Receiver::new(10);
    r.accept(0, 4).unwrap();
    assert_eq!(r.received(), 4);
    assert_eq!(
        r.accept(0, 4).unwrap_err(),
        "a chunk at offset 0 arrived where 4 was expected"
    );
    assert!(r.accept(8, 2).is_err(), "a gap is refused");
    assert_eq!(
        r.accept(4, 7).unwrap_err(),
        "11 bytes arrived for a file published with 10 bytes"
    );
    assert_eq!(r.received(), 4, "a refused chunk counts for nothing");
    r.accept(4, 6).unwrap();
    assert!(r.is_complete());
}

#[test]
fn a_broken_stream_resumes_from_what_was_saved() {
    let mut r = Receiver::new(3 * 1024);
    assert_eq!(r.resume_offset(), 0);
    r.accept(0, 1024).unwrap();
    r.accept(1024, 1000).unwrap();
    // The stream breaks here: ask again from the .part file's length.
    assert_eq!(r.resume_offset(), 2024);
    assert!(!r.is_complete());
    // The controller answers from that offset; an answer from the start is refused.
    assert!(r.accept(0, 1024).is_err());
    r.accept(2024, 1048).unwrap();
    r.accept(3072, 0).unwrap();
    assert!(r.is_complete());
    let empty = Receiver::new(0);
    assert!(empty.is_complete());
}

#[test]
fn the_sink_saves_and_hashes_what_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.csv");
    let (part, file) = PartFile::create(part_path(&dest)).unwrap();
    let mut sink = Sink::start(file);
    assert!(sink.push(b"hello ".to_vec()));
    assert!(sink.push(b"world".to_vec()));
    let saved = sink.finish().unwrap();
    assert_eq!(
        saved,
        Saved {
            size: 11,
            sha256: sha256_hex(b"hello world")
        }
    );
    assert_eq!(
        saved.sha256,
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    part.commit(&dest).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
    assert!(!part_path(&dest).exists());
}

#[test]
fn an_unfinished_part_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.csv");
    let (part, file) = PartFile::create(part_path(&dest)).unwrap();
    let mut sink = Sink::start(file);
    assert!(sink.push(vec![1; 100]));
    let part_at = part.path().to_owned();
    assert!(part_at.exists());
    drop(part);
    drop(sink);
    assert!(!part_at.exists());
    assert!(!dest.exists());
}

#[test]
fn a_symlink_in_place_of_the_part_file_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, "keep").unwrap();
    let dest = dir.path().join("out.csv");
    std::os::unix::fs::symlink(&target, part_path(&dest)).unwrap();
    let (_part, mut file) = PartFile::create(part_path(&dest)).unwrap();
    file.write_all(b"new").unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}

#[test]
fn verification_names_the_file_and_both_sums() {
    let saved = Saved {
        size: 3,
        sha256: sha256_hex(b"abc"),
    };
    assert!(verify("out.csv", &saved, 3, &sha256_hex(b"abc").to_uppercase()).is_ok());
    let wrong = sha256_hex(b"abd");
    assert_eq!(
        verify("out.csv", &saved, 3, &wrong).unwrap_err(),
        format!(
            "checksum mismatch for out.csv: expected {wrong}, got {}",
            saved.sha256
        )
    );
    assert_eq!(
        verify("out.csv", &saved, 4, &wrong).unwrap_err(),
        "size mismatch for out.csv: expected 4 bytes, got 3"
    );
}

#[test]
fn progress_lines_read_well() {
    assert_eq!(
        bar_line(
            "out.csv",
            256 * 1024 * 1024,
            1024 * 1024 * 1024,
            Duration::from_secs(1)
        ),
        "out.csv  [######------------------]  256.0 MiB / 1.0 GiB  25%  268.4 MB/s"
    );
    assert_eq!(
        bar_line("empty", 0, 0, Duration::ZERO),
        format!("empty  [{}]  0 B / 0 B  100%  0.0 MB/s", "#".repeat(24))
    );
    assert_eq!(
        done_line("out.csv", 2_000_000, 2_000_000, Duration::from_secs(2)),
        "saved out.csv (1.9 MiB) in 2.0s, 1.0 MB/s"
    );
}
