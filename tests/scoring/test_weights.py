"""Backbone weights over HTTP, from a real server on 127.0.0.1 serving files in the real formats."""

import hashlib
import io
import json
import logging
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from test_backbones import tiny_inception_graph

from doggan import cli
from doggan.data.sample import write_sample
from doggan.errors import DogganError
from doggan.params import EvalParams
from doggan.scoring import backbones, evaluation, weights


@pytest.fixture
def server():
    """An HTTP/1.0 server in a thread: serves `files` by path, cuts a body short at `cut[path]` bytes
    (after announcing its full length), records each request in `hits`; stopped after the test."""
    files, cut, hits = {}, {}, []

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a stuck client cannot hold the server past this

        def do_GET(self):
            hits.append(self.path)
            data = files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: cut.get(self.path, len(data))])

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_port}", files=files, cut=cut, hits=hits)
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty doggan and Keras caches, no overrides, and no proxy between the tests and 127.0.0.1."""
    monkeypatch.setenv("DOGGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for key in ("INCEPTION", "NASNET"):
        for part in ("URL", "SIZE", "HASH"):
            monkeypatch.delenv(f"DOGGAN_{key}_{part}", raising=False)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return SimpleNamespace(doggan=tmp_path / "cache", keras=tmp_path / "keras" / "models")


def graph_tgz() -> bytes:
    """inception-2015-12-05.tgz's layout around a tiny graph with the real tensor names."""
    graph = tiny_inception_graph()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(backbones.GRAPH_FILE)
        info.size = len(graph)
        tar.addfile(info, io.BytesIO(graph))
    return buffer.getvalue()


def serve_graph(server, monkeypatch, pin: bool = True) -> bytes:
    data = graph_tgz()
    server.files["/inception-2015-12-05.tgz"] = data
    monkeypatch.setenv("DOGGAN_INCEPTION_URL", f"{server.url}/inception-2015-12-05.tgz")
    if pin:
        monkeypatch.setenv("DOGGAN_INCEPTION_SIZE", str(len(data)))
        monkeypatch.setenv("DOGGAN_INCEPTION_HASH", hashlib.sha256(data).hexdigest())
    return data


def test_the_real_graph_is_the_default_with_its_size(monkeypatch):
    monkeypatch.delenv("DOGGAN_INCEPTION_URL", raising=False)
    monkeypatch.delenv("DOGGAN_INCEPTION_SIZE", raising=False)
    spec = weights.inception()
    assert spec.url == "https://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
    assert spec.size == 88_931_400


def test_fetched_once_then_reused_from_the_cache(server, caches, monkeypatch):
    data = serve_graph(server, monkeypatch)
    first = weights.fetch(weights.inception())
    assert first.source == "url" and first.url == f"{server.url}/inception-2015-12-05.tgz"
    assert first.path == str(caches.doggan / "inception-2015-12-05.tgz")
    assert (caches.doggan / "inception-2015-12-05.tgz").read_bytes() == data
    again = weights.fetch(weights.inception())
    assert again.source == "cache" and again.path == first.path
    assert server.hits == ["/inception-2015-12-05.tgz"]


def test_a_truncated_download_is_refused_and_removed(server, caches, monkeypatch):
    data = serve_graph(server, monkeypatch, pin=False)
    server.cut["/inception-2015-12-05.tgz"] = len(data) // 2
    with pytest.raises(weights.WeightsUnavailable, match="(truncated|broke off).*removed"):
        weights.fetch(weights.inception())
    assert list(caches.doggan.iterdir()) == [], "neither the file nor its temp copy is left"
    del server.cut["/inception-2015-12-05.tgz"]
    assert weights.fetch(weights.inception()).source == "url"


@pytest.mark.parametrize(
    "pin, message",
    [
        ({"DOGGAN_INCEPTION_HASH": hashlib.sha256(b"another file").hexdigest()}, "checksum"),
        ({"DOGGAN_INCEPTION_SIZE": "12"}, "bytes where 12 were expected"),
    ],
    ids=["checksum", "size"],
)
def test_a_download_that_is_not_the_pinned_file_is_refused(server, caches, monkeypatch, pin, message):
    serve_graph(server, monkeypatch, pin=False)
    for name, value in pin.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(weights.WeightsUnavailable, match=message):
        weights.fetch(weights.inception())
    assert list(caches.doggan.iterdir()) == []


def test_a_damaged_cached_file_is_downloaded_again(server, caches, monkeypatch, caplog):
    data = serve_graph(server, monkeypatch)
    caches.doggan.mkdir()
    (caches.doggan / "inception-2015-12-05.tgz").write_bytes(data[:100])
    with caplog.at_level(logging.WARNING, logger="doggan"):
        assert weights.fetch(weights.inception()).source == "url"
    assert "downloading it again" in caplog.text
    assert (caches.doggan / "inception-2015-12-05.tgz").read_bytes() == data


def test_overrides_are_checked(monkeypatch):
    monkeypatch.setenv("DOGGAN_INCEPTION_SIZE", "big")
    with pytest.raises(DogganError, match="DOGGAN_INCEPTION_SIZE: expected a number of bytes"):
        weights.inception()
    monkeypatch.setenv("DOGGAN_INCEPTION_SIZE", "10")
    monkeypatch.setenv("DOGGAN_INCEPTION_HASH", "abc")
    with pytest.raises(DogganError, match="DOGGAN_INCEPTION_HASH: expected a sha256"):
        weights.inception()


def test_auto_fetches_kaggles_graph_once_and_says_where_it_came_from(server, caches, monkeypatch, tmp_path):
    serve_graph(server, monkeypatch)
    first = backbones.load("auto")
    assert first.name == "tf2015" and first.kaggle_comparable
    assert backbones.provenance(first) == {
        "weights_source": "url",
        "weights": str(caches.doggan / "inception-2015-12-05.tgz"),
        "weights_url": f"{server.url}/inception-2015-12-05.tgz",
    }
    pb = tmp_path / backbones.GRAPH_FILE
    pb.write_bytes(tiny_inception_graph())
    batch = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        backbones.features(first, [batch]), backbones.features(backbones.tf2015(str(pb)), [batch])
    )
    assert backbones.provenance(backbones.load("auto"))["weights_source"] == "cache"
    assert backbones.provenance(backbones.tf2015(str(pb)))["weights_source"] == "path"
    assert len(server.hits) == 1


def test_auto_on_an_unreachable_host_falls_back_to_the_standin_with_one_line(caches, monkeypatch, caplog):
    url = f"http://127.0.0.1:{closed_port()}/inception-2015-12-05.tgz"
    monkeypatch.setenv("DOGGAN_INCEPTION_URL", url)
    with caplog.at_level(logging.WARNING, logger="doggan"):
        backbone = backbones.load("auto")
    assert backbone.name == "standin" and not backbone.kaggle_comparable
    assert backbones.provenance(backbone)["weights_source"] == "standin"
    [record] = [r for r in caplog.records if "stand-in" in r.getMessage()]
    message = record.getMessage()
    assert "\n" not in message
    assert f"{url}: cannot download (" in message and "NOT comparable" in message
    assert "doggan weights" in message
    with pytest.raises(weights.WeightsUnavailable, match="doggan weights"):
        backbones.load("tf2015")


def test_the_eval_report_records_where_the_weights_came_from(server, caches, monkeypatch, tmp_path):
    serve_graph(server, monkeypatch)
    write_sample(tmp_path / "raw", 8, seed=2)
    params = EvalParams(batch_size=4)
    evaluation.real_stats_stage(tmp_path / "raw", tmp_path / "no_crops.npz", params, tmp_path / "stats.npz")
    meta, _ = evaluation.load_stats(tmp_path / "stats.npz")
    assert meta["public"]["backbone"] == "tf2015" and meta["public"]["weights_source"] == "url"
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as zf:
        for i, image in enumerate(np.random.default_rng(1).integers(0, 256, (6, 64, 64, 3), np.uint8)):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            zf.writestr(f"{i}.png", buffer.getvalue())
    evaluation.evaluate_stage(
        tmp_path / "images.zip", tmp_path / "stats.npz", params, tmp_path / "eval.json", tmp_path / "plots"
    )
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["weights_source"] == "cache"
    assert report["weights"] == str(caches.doggan / "inception-2015-12-05.tgz")


def test_doggan_weights_fetches_ahead_of_time(server, caches, monkeypatch, capsys):
    serve_graph(server, monkeypatch)
    server.files["/NASNet-large-no-top.h5"] = b"h5 stand-in bytes"
    monkeypatch.setenv("DOGGAN_NASNET_URL", f"{server.url}/NASNet-large-no-top.h5")
    assert cli.main(["weights", "--private"]) == 0
    out = capsys.readouterr().out
    assert f"{caches.doggan / 'inception-2015-12-05.tgz'}: url" in out
    assert (caches.keras / "nasnet_large_no_top.h5").read_bytes() == b"h5 stand-in bytes"
    assert cli.main(["weights"]) == 0
    assert f"{caches.doggan / 'inception-2015-12-05.tgz'}: cache" in capsys.readouterr().out
    monkeypatch.setenv("DOGGAN_CACHE", str(caches.doggan.parent / "empty"))
    monkeypatch.setenv("DOGGAN_INCEPTION_URL", f"http://127.0.0.1:{closed_port()}/x.tgz")
    assert cli.main(["weights"]) == 2, "a graph that cannot be fetched is an error here"
    assert "cannot download" in capsys.readouterr().err


def test_a_graph_url_in_params_is_downloaded_once_under_its_own_name(server, caches):
    server.files["/mirror/graph.tgz"] = graph_tgz()
    url = f"{server.url}/mirror/graph.tgz"
    first = backbones.load("auto", url)
    assert first.name == "tf2015" and backbones.provenance(first)["weights_url"] == url
    assert first.origin.source == "url" and first.origin.path.endswith("-graph.tgz")
    assert backbones.load("tf2015", url).origin.source == "cache"
    assert server.hits == ["/mirror/graph.tgz"]
