"""Safe extraction of stems archives: every hostile archive is refused with nothing written anywhere."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stemkit.errors import ProtocolError
from stemkit_ezstems._archive import ArchiveWarning, ZipLimits, extract_stems

FOUR = ("vocals", "drums", "bass", "other")
MIB = 1024 * 1024


def wav_bytes(frames: int = 2205, value: float = 0.1) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.full((frames, 2), value, dtype=np.float32), 22050, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def mp3_bytes() -> bytes:
    buf = io.BytesIO()
    t = np.arange(22050) / 22050
    sf.write(buf, 0.2 * np.sin(2 * np.pi * 440 * t), 22050, format="MP3", subtype="MPEG_LAYER_III")
    return buf.getvalue()


def make_zip(path: Path, members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def four_stems(folder: str = "song") -> dict[str, bytes]:
    return {f"{folder}/{name}.wav": wav_bytes() for name in FOUR}


def patch_central_size(path: Path, name: str, size: int) -> None:
    data = bytearray(path.read_bytes())
    offset = data.find(b"PK\x01\x02")
    while offset != -1:
        length = struct.unpack_from("<H", data, offset + 28)[0]
        if bytes(data[offset + 46 : offset + 46 + length]) == name.encode():
            struct.pack_into("<I", data, offset + 24, size)
            path.write_bytes(bytes(data))
            return
        offset = data.find(b"PK\x01\x02", offset + 4)
    raise AssertionError(f"{name} not in archive")


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def area(tmp_path: Path) -> tuple[Path, Path]:
    """(the archive's folder, the destination): the destination sits inside a sandbox we can inspect whole."""
    sandbox = tmp_path / "sandbox"
    dest = sandbox / "out" / "stems"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("already here")
    return tmp_path / "zips", dest


def assert_untouched(dest: Path) -> None:
    sandbox = dest.parent.parent
    assert tree(sandbox) == {"out", "out/stems", "out/stems/keep.txt"}


# -- what must work --------------------------------------------------------------------------------------


def test_extracts_nested_wav_stems_under_stemkit_chosen_names(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    archive = make_zip(zips / "a.zip", four_stems("deep/er/song"))
    result = extract_stems(archive, dest, FOUR)
    assert {k: v.name for k, v in result.items()} == {s: f"{s}.wav" for s in FOUR}
    assert tree(dest) == {"keep.txt", *(f"{s}.wav" for s in FOUR)}
    assert sf.info(result["vocals"]).frames == 2205


def test_extracts_mp3_members_and_maps_spleeter_and_prefixed_names(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    members = {"x/1699567234_2_12345_Vocals.MP3": mp3_bytes(), "x/no_vocals.mp3": mp3_bytes()}
    archive = make_zip(zips / "a.zip", members)
    result = extract_stems(archive, dest, ("vocals", "accompaniment"))
    assert {k: v.name for k, v in result.items()} == {"vocals": "vocals.mp3", "accompaniment": "accompaniment.mp3"}
    assert sf.info(result["accompaniment"]).samplerate == 22050


def test_ignores_non_audio_and_unexpected_members_with_a_warning(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    members = {
        **four_stems(),
        "song/readme.txt": b"hello",
        "song/cover.jpg": b"\xff\xd8\xff\xe0",
        "__MACOSX/song/._vocals.wav": b"\x00" * 32,
        "song/.hidden.wav": wav_bytes(),
        "song/guitar.wav": wav_bytes(),
        "song/": b"",
    }
    archive = make_zip(zips / "a.zip", members)
    with pytest.warns(ArchiveWarning, match=r"readme\.txt.*cover\.jpg") as caught:
        extract_stems(archive, dest, FOUR)
    assert "guitar.wav" in str(caught[0].message)
    assert tree(dest) == {"keep.txt", *(f"{s}.wav" for s in FOUR)}


def test_a_silent_stem_beside_real_ones_is_not_mistaken_for_a_bomb(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    frames = 60 * 22050  # a minute: 5 MB of PCM per stem, 21 MB in all, above the ratio floor
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (frames, 2)).astype(np.float32)
    zips_path = zips / "a.zip"
    with zipfile.ZipFile(zips_path, "w") as archive:
        for name in FOUR:
            buf = io.BytesIO()
            silent = name == "other"
            sf.write(buf, np.zeros_like(noise) if silent else noise, 22050, format="WAV", subtype="PCM_16")
            method = zipfile.ZIP_DEFLATED if silent else zipfile.ZIP_STORED  # silence deflates ~1000-fold
            archive.writestr(f"s/{name}.wav", buf.getvalue(), compress_type=method)
    limits = ZipLimits.for_duration(frames / 22050, 4)
    assert set(extract_stems(zips_path, dest, FOUR, limits=limits)) == set(FOUR)


# -- what must be refused, with nothing written -------------------------------------------------------------

HOSTILE_NAMES = [
    "../evil.wav",
    "song/../../evil.wav",
    "/tmp/ezstems-test-evil.wav",
    "C:/evil.wav",
    "..\\..\\evil.wav",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_refuses_entries_that_could_escape_the_destination(area: tuple[Path, Path], name: str) -> None:
    zips, dest = area
    zips.mkdir()
    archive = zips / "a.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for member, data in four_stems().items():
            out.writestr(member, data)
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # bypass ZipInfo's own sanitizing, as a hostile server would
        out.writestr(info, wav_bytes())
    with pytest.raises(ProtocolError, match="refused"):
        extract_stems(archive, dest, FOUR)
    assert_untouched(dest)
    assert not Path("/tmp/ezstems-test-evil.wav").exists()


@pytest.mark.parametrize("mode", [stat.S_IFLNK | 0o777, stat.S_IFIFO | 0o644, stat.S_IFCHR | 0o644])
def test_refuses_links_and_special_files(area: tuple[Path, Path], mode: int) -> None:
    zips, dest = area
    zips.mkdir()
    archive = make_zip(zips / "a.zip", {k: v for k, v in four_stems().items() if "vocals" not in k})
    with zipfile.ZipFile(archive, "a") as out:
        link = zipfile.ZipInfo("song/vocals.wav")
        link.create_system = 3
        link.external_attr = mode << 16
        out.writestr(link, "/etc/passwd")
    with pytest.raises(ProtocolError, match=r"symbolic link|not a regular file"):
        extract_stems(archive, dest, FOUR)
    assert_untouched(dest)


def test_refuses_an_entry_declaring_more_than_the_bound(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    archive = make_zip(zips / "a.zip", four_stems())
    patch_central_size(archive, "song/other.wav", 0xE000_0000)
    with pytest.raises(ProtocolError, match=r"declares .*zip bomb"):
        extract_stems(archive, dest, FOUR, limits=ZipLimits.for_duration(0.1, 4))
    assert_untouched(dest)


def test_refuses_archives_whose_declared_total_is_past_the_bound(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    archive = make_zip(zips / "a.zip", four_stems())
    with pytest.raises(ProtocolError, match="in all"):
        extract_stems(archive, dest, FOUR, limits=ZipLimits(max_member_bytes=MIB, max_total_bytes=10_000))
    assert_untouched(dest)


def test_refuses_an_entry_that_inflates_past_its_declared_size(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    members = four_stems()
    members["song/other.wav"] = members["song/other.wav"][:44] + bytes(8 * MIB)
    archive = make_zip(zips / "a.zip", members)
    patch_central_size(archive, "song/other.wav", 1024)
    with pytest.raises(ProtocolError):
        extract_stems(archive, dest, FOUR)
    assert_untouched(dest)


def test_refuses_a_high_ratio_archive(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    members = four_stems()
    members["song/other.wav"] = members["song/other.wav"][:44] + bytes(20 * MIB)
    archive = make_zip(zips / "a.zip", members)
    with pytest.raises(ProtocolError, match=r"inflates .*-fold"):
        extract_stems(archive, dest, FOUR, limits=ZipLimits())
    assert_untouched(dest)


def test_refuses_too_many_entries(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    members = {**four_stems(), **{f"song/junk{i}.txt": b"x" for i in range(20)}}
    archive = make_zip(zips / "a.zip", members)
    with pytest.raises(ProtocolError, match="entries"):
        extract_stems(archive, dest, FOUR, limits=ZipLimits(max_members=10))
    assert_untouched(dest)


def test_refuses_encrypted_entries(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    archive = make_zip(zips / "a.zip", four_stems())
    data = bytearray(archive.read_bytes())
    offset = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, offset + 8, struct.unpack_from("<H", data, offset + 8)[0] | 0x1)
    archive.write_bytes(bytes(data))
    with pytest.raises(ProtocolError, match="encrypted"):
        extract_stems(archive, dest, FOUR)
    assert_untouched(dest)


def test_a_missing_stem_is_named(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    archive = make_zip(zips / "a.zip", {k: v for k, v in four_stems().items() if "bass" not in k})
    with pytest.raises(ProtocolError, match=r"no bass stem \(it holds: song/vocals\.wav"):
        extract_stems(archive, dest, FOUR)
    assert_untouched(dest)


def test_two_members_for_one_stem_are_refused(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    archive = make_zip(zips / "a.zip", {**four_stems(), "song/vocals.mp3": mp3_bytes()})
    with pytest.raises(ProtocolError, match="both the vocals stem"):
        extract_stems(archive, dest, FOUR)
    assert_untouched(dest)


def test_a_member_that_is_not_the_audio_it_claims_is_refused_after_earlier_stems_were_staged(
    area: tuple[Path, Path],
) -> None:
    zips, dest = area
    zips.mkdir()
    members = four_stems()
    members["song/other.wav"] = b"<html>502 Bad Gateway</html>" * 10
    archive = make_zip(zips / "a.zip", members)
    with pytest.raises(ProtocolError, match="not a WAV file"):
        extract_stems(archive, dest, FOUR)
    assert_untouched(dest)


def test_an_empty_member_is_refused(area: tuple[Path, Path]) -> None:
    zips, dest = area
    zips.mkdir()
    archive = make_zip(zips / "a.zip", {**four_stems(), "song/other.wav": b""})
    with pytest.raises(ProtocolError, match="empty"):
        extract_stems(archive, dest, FOUR)
    assert_untouched(dest)


@pytest.mark.parametrize("damage", ["flip", "cut", "garbage"])
def test_corrupt_archives_are_protocol_errors_with_no_partial_file(area: tuple[Path, Path], damage: str) -> None:
    zips, dest = area
    zips.mkdir()
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, (22050, 2)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, noise, 22050, format="WAV", subtype="PCM_16")
    members = {**four_stems(), "song/other.wav": buf.getvalue()}
    archive = make_zip(zips / "a.zip", members)
    data = bytearray(archive.read_bytes())
    if damage == "flip":
        with zipfile.ZipFile(archive) as z:
            info = z.getinfo("song/other.wav")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        for i in range(start + info.compress_size // 2, start + info.compress_size // 2 + 64):
            data[i] ^= 0x5A
    elif damage == "cut":
        del data[int(len(data) * 0.6) :]
    else:
        data = bytearray(b"<html>not a zip</html>")
    archive.write_bytes(bytes(data))
    with pytest.raises(ProtocolError, match="corrupt or truncated"):
        extract_stems(archive, dest, FOUR)
    assert_untouched(dest)


_NAME_PARTS = st.sampled_from(["..", ".", "", "/", "\\", "C:", "song", "vocals.wav", "a\x00", "~", "//", "x"])


@pytest.mark.filterwarnings("ignore::stemkit_ezstems._archive.ArchiveWarning")
@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_NAME_PARTS, min_size=1, max_size=6))
def test_no_entry_name_ever_writes_outside_the_destination(tmp_path: Path, parts: list[str]) -> None:
    name = "/".join(parts)
    assume(name.strip("\x00"))
    case = tmp_path / f"case{abs(hash(tuple(parts)))}"
    dest = case / "sandbox" / "stems"
    dest.mkdir(parents=True, exist_ok=True)
    archive = case / "a.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for member, data in four_stems().items():
            out.writestr(member, data)
        info = zipfile.ZipInfo("placeholder")
        info.filename = name
        out.writestr(info, wav_bytes())
    try:
        extract_stems(archive, dest, FOUR)
    except ProtocolError:
        assert tree(case / "sandbox") == {"stems"}
    else:
        assert tree(case / "sandbox") <= {"stems", *(f"stems/{s}.wav" for s in FOUR)}
