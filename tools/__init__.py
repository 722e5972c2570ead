"""Developer tools, not part of the installed library (setup.cfg installs `udsph_tf*` only):

    python -m tools.rest --model_config_file=export/RUN/models.config --port=8501
    python -m tools.examples --run_dir=export/RUN            # docs/serving.md's REST examples
    python tools/build_tfds.py --dataset=mirflickr --list     # build a TFDS data set
    python tools/make_tfds_dummy_data.py --out /tmp/dummy     # fake TFDS releases (tests)

Run them from the repository root (like main.py, which imports flags/ the same way).
"""
