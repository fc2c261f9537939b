"""What sox users bring: TPDF dither when bits are reduced (its noise measured), -b, -V, -S, tags
carried over, the IN OUT order refused with a hint, and files passed over in a folder named."""

import json

import numpy as np
import pytest
import soundfile as sf
from clitools import cli, one_error_line

RATE = 48000


def _quiet_tone(path, frequency=1000.0, seconds=2.0, dbfs=-60.0):
    """A quiet tone as a float file at 16 kHz: the run computes in float32 and writes 16 bits."""
    t = np.arange(int(seconds * 16000)) / 16000
    amplitude = 10 ** (dbfs / 20)
    sf.write(str(path), amplitude * np.sin(2 * np.pi * frequency * t), 16000, subtype="FLOAT")
    return amplitude


def _spurs(signal, rate, frequency):
    """(the largest harmonic's level above the median noise floor in dB, the noise floor)."""
    window = np.blackman(signal.size)
    power = np.abs(np.fft.rfft(signal * window)) ** 2
    bins = np.fft.rfftfreq(signal.size, 1 / rate)
    floor = np.median(power)
    harmonics = [k * frequency for k in range(2, 20) if k * frequency < 0.45 * rate]
    levels = [power[np.abs(bins - h) <= 8].max() for h in harmonics]
    return 10 * np.log10(max(levels) / floor)


def test_16_bit_output_is_tpdf_dithered_by_default_and_its_harmonics_drown(tmp_path):
    amplitude = _quiet_tone(tmp_path / "q.wav")
    for name, extra in (("dithered.wav", []), ("plain.wav", ["--no-dither"]), ("plain-D.wav", ["-D"])):
        done = cli("run", "q.wav", "-r", "48k", "--subtype", "PCM_16", "-o", name, "--json", *extra, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["dithered"] is (not extra)
    dithered = sf.read(str(tmp_path / "dithered.wav"))[0][4800:-4800]
    plain = sf.read(str(tmp_path / "plain.wav"))[0][4800:-4800]
    assert np.array_equal(plain, sf.read(str(tmp_path / "plain-D.wav"))[0][4800:-4800])
    t = (np.arange(plain.size) + 4800) / RATE
    ideal = amplitude * np.sin(2 * np.pi * 1000 * t)
    lsb = 2.0**-15
    # rounding alone: every error within half a step, all of it at the tone's harmonics (the error
    # of a periodic signal is periodic)
    assert np.max(np.abs(plain - ideal)) / lsb < 0.501
    assert _spurs(plain, RATE, 1000) > 40
    # TPDF: error rms 1/2 LSB (rounding's 1/12 + the noise's 1/6 LSB²), no harmonic above the floor
    assert abs(np.std(dithered - ideal) / lsb - 0.5) < 0.03
    assert _spurs(dithered, RATE, 1000) < 12
    # the noise is the file's, not the run's: the same input gives the same bits again
    done = cli("run", "q.wav", "-r", "48k", "--subtype", "PCM_16", "-o", "again.wav", "--chunk", "777", cwd=tmp_path)
    assert done.returncode == 0
    assert np.array_equal(sf.read(str(tmp_path / "again.wav"))[0][4800:-4800], dithered)


def test_outputs_as_wide_as_the_computation_are_not_dithered(tmp_path):
    _quiet_tone(tmp_path / "q.wav")
    for args, dithered in (
        (["-b", "24"], False),
        (["--subtype", "FLOAT"], False),
        (["-b", "24", "--dtype", "float64"], True),
    ):
        done = cli("run", "q.wav", "-r", "48k", "-o", "o.wav", "-y", "--json", *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["dithered"] is dithered, args


@pytest.mark.parametrize("bits, subtype", [(16, "PCM_16"), (24, "PCM_24"), (32, "PCM_32")])
def test_b_sets_the_bits_of_the_output(tmp_path, bits, subtype):
    _quiet_tone(tmp_path / "q.wav")
    done = cli("run", "q.wav", "-r", "48k", "-b", bits, "-o", "o.flac" if bits < 32 else "o.wav", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sf.info(str(tmp_path / ("o.flac" if bits < 32 else "o.wav"))).subtype == subtype


@pytest.mark.parametrize(
    "args, message",
    [
        (["-b", "12"], "-b: 12 is not one of [16, 24, 32]"),
        (["-b", "16", "--subtype", "PCM_24"], "-b 16 and --subtype PCM_24 contradict each other"),
    ],
)
def test_bad_bits_are_one_line_and_exit_2(tmp_path, args, message):
    _quiet_tone(tmp_path / "q.wav")
    done = cli("run", "q.wav", "-r", "48k", "-o", "o.wav", *args, cwd=tmp_path)
    assert done.returncode == 2
    one_error_line(done.stderr, message)
    assert not (tmp_path / "o.wav").exists()


def test_sox_order_in_out_is_refused_with_the_hint_before_any_work(tmp_path):
    _quiet_tone(tmp_path / "in.wav")
    done = cli("run", "in.wav", "out.wav", "-r", "44.1k", cwd=tmp_path)
    assert done.returncode == 2
    one_error_line(done.stderr, "out.wav: no such input; every path is an input here: name the output with -o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]
    # two inputs that exist stay a batch of two
    _quiet_tone(tmp_path / "two.wav")
    done = cli("run", "in.wav", "two.wav", "-r", "44.1k", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "in.44100hz.wav").exists() and (tmp_path / "two.44100hz.wav").exists()


def test_verbose_says_the_engine_and_dither_and_show_progress_draws_off_a_terminal(tmp_path):
    _quiet_tone(tmp_path / "q.wav")
    done = cli("run", "q.wav", "-r", "48k", "-b", "16", "-o", "o.wav", "-V", cwd=tmp_path)
    assert done.returncode == 0
    line = done.stderr.decode()
    assert "q.wav -> o.wav" in line and "engine on cpu, PCM_16, TPDF-dithered" in line, line
    done = cli("run", "q.wav", "-r", "48k", "-o", "p.wav", "-S", cwd=tmp_path)
    assert done.returncode == 0 and "━" in done.stderr.decode() and "%" in done.stderr.decode(), done.stderr
    quiet = cli("run", "q.wav", "-r", "48k", "-o", "r.wav", cwd=tmp_path)
    assert "%" not in quiet.stderr.decode()  # not a terminal, no -S: result lines only


TAGS = {"title": "Take 5", "artist": "Ünïcode Trio", "album": "Live", "date": "2026", "comment": "room mic"}


@pytest.mark.parametrize("source, target", [("in.wav", "out.flac"), ("in.flac", "out.flac"), ("in.flac", "out.wav")])
def test_tags_survive_where_the_output_holds_them(tmp_path, source, target):
    t = np.arange(8000) / 16000
    with sf.SoundFile(str(tmp_path / source), "w", 16000, 1, "PCM_16") as f:
        for name, value in TAGS.items():
            setattr(f, name, value)
        f.write(0.3 * np.sin(2 * np.pi * 300 * t))
    done = cli("run", source, "-r", "48k", "-o", target, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with sf.SoundFile(str(tmp_path / target)) as f:
        found = f.copy_metadata()
    assert {k: found.get(k) for k in TAGS} == TAGS


def test_files_a_folder_holds_but_the_batch_passes_over_are_named(tmp_path):
    (tmp_path / "in").mkdir()
    _quiet_tone(tmp_path / "in" / "take.wav")
    _quiet_tone(tmp_path / "in" / "take.44100hz.wav")
    done = cli("run", "in", "-o", "out/", "-r", "48k", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stderr.decode()
    assert "take.44100hz.wav: skipped, named as this tool names its outputs" in text, text
    assert "2 inputs: 1 written, 1 skipped, 0 failed" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["take.wav"]
    done = cli("run", "in", "-o", "out2/", "-r", "48k", "--json", cwd=tmp_path)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert {(r["input"].split("/")[-1], r["status"]) for r in records} == {
        ("take.wav", "ok"),
        ("take.44100hz.wav", "skipped"),
    }
