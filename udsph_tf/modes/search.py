"""`main.py --mode=search`: encode one query, rank the other modality's database (Hamming).

    python main.py --mode=search --workdir=runs/r1 --query_tags=sky,clouds    # text -> image
    python main.py --mode=search --workdir=runs/r1 --query_image_row=17       # image -> text
    python main.py --mode=search --workdir=runs/r1 --query_image_file=p.jpg \
        --backbone=efficientnet_lite0

--backbone here names the CNN that turns --query_image_file into features (the extractor of the
run's training features), never the run's network input, which comes from its record
(run_identity.SEARCH_QUERY_FIELDS).
"""

import dataclasses
import difflib
import os
import sys

import numpy as np

from udsph_tf import export, rundir, run_identity
from udsph_tf.codes import pack_codes, to_codes
from udsph_tf.config import Config, replace
from udsph_tf.data import images as image_data
from udsph_tf.data.regions import pool_regions
from udsph_tf.data.splits import data_and_split
from udsph_tf.errors import ConfigError, DataError, MissingFileError
from udsph_tf.models.backbones import build_backbone
from udsph_tf.modes.export import load_run

MAX_TAGS_SHOWN = 8


def run(config):
    return search(config)


@dataclasses.dataclass
class SearchResult:
    direction: str             # "text->image" or "image->text"
    query: str                 # what the query was, for the printout
    ids: np.ndarray            # (k,) database ids, best first
    positions: np.ndarray      # (k,) positions in the database
    distances: np.ndarray      # (k,) Hamming distances
    labels: list               # per result: label names (or indices) of the item
    code_source: str           # which encoders made the codes (export version or checkpoint)
    backend: str
    database_size: int


def query_mode(config):
    """Which query flag is given ("--query_tags", "--query_image_row", "--query_image_file");
    exactly one must be."""
    # -1 is the flag's "not given"; any other negative row is a typo, not a missing query.
    if config.query_image_row < -1:
        raise ConfigError(f"--query_image_row={config.query_image_row}: out of range (rows "
                          "are numbered from 0; -1 means no image-row query)")
    given = [name for name, on in (("--query_tags", bool(config.query_tags)),
                                   ("--query_image_row", config.query_image_row >= 0),
                                   ("--query_image_file", bool(config.query_image_file))) if on]
    if len(given) != 1:
        raise ConfigError("--mode=search needs exactly one query: --query_tags=sky,clouds "
                          "(text->image), --query_image_row=N or --query_image_file=photo.jpg "
                          f"(image->text); got {given or 'none'}")
    return given[0]


def tags_to_bow(query_tags, vocab, tag_dim):
    """Comma-separated tag names -> (1, tag_dim) 0/1 bag-of-words over `vocab`."""
    if not vocab:
        raise DataError("--query_tags: this dataset has no tag vocabulary (common_tags.txt in "
                        "--data_dir), so tag names cannot be mapped to bag-of-words columns")
    if len(vocab) != tag_dim:
        raise DataError(f"--data_dir: the tag vocabulary has {len(vocab)} names but the tag "
                        f"input has {tag_dim} columns (a vocabulary file of other tags?)")
    words = [w.strip() for w in query_tags.split(",") if w.strip()]
    if not words:
        raise ConfigError(f"--query_tags={query_tags!r} holds no tag")
    column = {t: j for j, t in enumerate(vocab)}
    lower = {t.lower(): j for j, t in enumerate(vocab)}
    bow = np.zeros((1, tag_dim), np.float32)
    unknown = []
    for w in words:
        j = column.get(w, lower.get(w.lower()))
        if j is None:
            unknown.append(w)
        else:
            bow[0, j] = 1.0
    if unknown:
        hints = []
        for w in unknown:
            close = difflib.get_close_matches(w.lower(), list(lower), n=5, cutoff=0.6)
            hints.append(f"{w!r} (close: {', '.join(close)})" if close
                         else f"{w!r} (no close match)")
        raise ConfigError(f"--query_tags: unknown tag(s) {'; '.join(hints)}. The vocabulary "
                          f"has {len(vocab)} tags, e.g. {', '.join(vocab[:5])}")
    return bow, words


def image_file_features(config, path, feature_shape, region_grid=0):
    """Features of one photo from the raw-image backbone --backbone (the extractor of the
    run's training features), checked against the run's image input shape: its global vector,
    or with region_grid (a run trained with --region_grid) the grid cells then the global row."""
    if config.backbone == "features":
        raise ConfigError(
            f"--query_image_file={path}: the run was trained on precomputed image features, so "
            "a photo must first go through the same CNN: pass --backbone=efficientnet_lite0 "
            "(the extractor of mirflickr730's features) or the backbone your --image_file "
            "features came from (see --mode=extract)")
    backbone = build_backbone(config.backbone, config.backbone_weights)
    batch = image_data.load_image(path, image_data.ImageSpec(**backbone.preprocessing))
    features = photo_features(backbone.model(batch, training=False), region_grid)
    if tuple(features.shape[1:]) != tuple(feature_shape):
        raise ConfigError(f"--backbone={config.backbone} gives {features.shape[1:]} features "
                          f"but the run's image input is {tuple(feature_shape)}: use the "
                          "backbone that made the training features")
    return features


def photo_features(outputs, region_grid=0):
    """A backbone's {"global", "regions"} outputs -> the run's image input, float32: the global
    vector (n, C), or (n, g*g + 1, C) for --region_grid=g, laid out as data/regions.py and
    readers.py lay out the training rows (cells pooled from the head map, then the global)."""
    pooled = np.asarray(outputs["global"], np.float32)
    if not region_grid:
        return pooled
    cells = pool_regions(np.asarray(outputs["regions"], np.float32), region_grid)
    return np.concatenate([cells, pooled[:, None, :]], axis=1)


def encoders_and_databases(config, run_cfg, data, split, run_name):
    """Exported encoders + their databases when the run was exported, else the checkpoint's
    encoders with databases cached in the workdir. Returns (encoders, db_dir)."""
    try:
        found = export.latest_export(config.export_dir, run_name, config.export_version)
    except FileNotFoundError as err:
        raise MissingFileError(f"--export_version={config.export_version}: {err}") from None
    if found is not None:
        image_dir, text_dir, version = found
        # The export must be this run's, from its current best/ checkpoint, on its data.
        run_identity.check_export(run_cfg.workdir, (image_dir, text_dir),
                                  _export_command(config, run_cfg), config.run_name)
        run_identity.check_data(run_cfg, data, split)
        db_dir = os.path.join(config.export_dir, run_name, "databases", f"v{version}")
        encoders = export.SavedModelEncoders(image_dir, text_dir)
        encoders.source = str(version)  # the databases' model_version, as exported
        encoders.description = f"exported version {version} ({os.path.dirname(image_dir)})"
        return encoders, db_dir
    try:
        run = load_run(run_cfg, data, split)
    except MissingFileError as err:
        raise MissingFileError(
            f"--workdir={run_cfg.workdir}: nothing to search with: no export of run "
            f"{run_name!r} under --export_dir={config.export_dir} (--mode=export writes one) and "
            f"{err}") from None
    encoders = run.encoders()
    run_id = (run_identity.read_record(run_cfg.workdir) or {}).get("run_id")
    if run_id:  # the codes cache of a retrained workdir must not match the earlier training's
        encoders.source += f" run {run_id[:12]}"
    return encoders, rundir.path(run_cfg.workdir, rundir.CODES_DIR)


def _export_command(config, run_cfg):
    """The --mode=export command that refreshes this run's export (without --run_name)."""
    command = f"python main.py --mode=export --workdir={run_cfg.workdir}"
    if config.export_dir != Config().export_dir:
        command += f" --export_dir={config.export_dir}"
    return command


def search(config, data=None, split=None, out=None):
    """Run one query and print the ranked database items; returns a SearchResult."""
    out = out or sys.stdout
    mode = query_mode(config)
    if config.top_k < 1:
        raise ConfigError(f"--top_k must be >= 1, got {config.top_k}")
    # --backbone(_weights) here name the photo's feature extractor, never the run's network
    # input (main.py leaves them out of its check against the run's record).
    run_cfg = run_identity.resolve(replace(config, backbone=Config().backbone,
                                           backbone_weights=Config().backbone_weights))
    data, split = data_and_split(run_cfg, data, split)
    if data.images is None:
        raise export.raw_image_run_error(data.name, "search")
    run_name = export.run_name_of(run_cfg)
    encoders, db_dir = encoders_and_databases(config, run_cfg, data, split, run_name)
    rows = split.database_idx

    if mode == "--query_tags":
        x, words = tags_to_bow(config.query_tags, data.tag_vocab, data.tag_dim)
        query_modality, db_modality, query = "text", "image", "tags " + ", ".join(words)
    elif mode == "--query_image_row":
        n = data.num_items
        if config.query_image_row >= n:
            raise ConfigError(f"--query_image_row={config.query_image_row} is out of range: "
                              f"{data.name} has {n} rows (0..{n - 1})")
        x = data.images[config.query_image_row:config.query_image_row + 1]
        where = "a query item" if config.query_image_row in set(split.query_idx.tolist()) \
            else "not a query item"
        query_modality, db_modality = "image", "text"
        own = _label_names(data.labels[config.query_image_row], data.label_names)
        query = f"image row {config.query_image_row} (id {data.ids[config.query_image_row]}, " \
                f"{where}; labels {', '.join(own) or '-'})"
    else:
        x = image_file_features(config, config.query_image_file, data.images.shape[1:],
                                run_cfg.region_grid)
        query_modality, db_modality = "image", "text"
        query = f"image file {config.query_image_file}"

    db, _ = export.cached_database(os.path.join(db_dir, f"{db_modality}.npz"), encoders, data,
                                   rows, db_modality, run_name, run_cfg.bits)
    hashes = encoders.hash(query_modality, x)
    q_packed = pack_codes(to_codes(hashes))
    index = db.index(backend=config.search_backend)
    positions, distances = index.search(q_packed, config.top_k)
    positions, distances = positions[0], distances[0]
    result = SearchResult(
        direction=f"{query_modality}->{db_modality}", query=query, ids=db.ids[positions],
        positions=positions, distances=distances,
        labels=[_label_names(db.labels[p], data.label_names) if db.labels is not None else []
                for p in positions],
        code_source=getattr(encoders, "description", encoders.source), backend=index.backend,
        database_size=len(db))
    _print(result, data, rows, db_modality, run_cfg.bits, out)
    return result


def _label_names(row, names):
    on = np.flatnonzero(np.asarray(row) > 0)
    return [names[j] if names else str(j) for j in on]


def _print(result, data, rows, db_modality, bits, out):
    print(f"{result.direction} search for {result.query}: top {len(result.ids)} of "
          f"{result.database_size} database {db_modality}s (Hamming distance, {bits} bits; "
          f"codes from {result.code_source}; backend {result.backend})", file=out)
    header = f"{'rank':>4}  {'id':>10}  {'dist':>4}  labels"
    if db_modality == "text" and data.tag_vocab:
        header += "  |  tags"
    print(header, file=out)
    for rank, (item_id, pos, dist, labels) in enumerate(
            zip(result.ids, result.positions, result.distances, result.labels), start=1):
        line = f"{rank:>4}  {str(item_id):>10}  {int(dist):>4}  {', '.join(labels) or '-'}"
        if db_modality == "text" and data.tag_vocab:
            on = np.flatnonzero(data.tags[rows[pos]] > 0)
            shown = [data.tag_vocab[j] for j in on[:MAX_TAGS_SHOWN]]
            more = f" (+{len(on) - MAX_TAGS_SHOWN})" if len(on) > MAX_TAGS_SHOWN else ""
            line += f"  |  {' '.join(shown)}{more}"
        elif db_modality == "image" and data.image_paths is not None:
            line += f"  |  {data.image_paths[rows[pos]]}"
        print(line, file=out)
