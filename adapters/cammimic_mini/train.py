"""``python -m cammimic_mini.train`` still works: the trainer moved to :mod:`cammimic_mini.lab.train`
(``python -m cammimic_mini.lab.train``), with mini's data and competence probes, apart from the plugin."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("cammimic_mini.lab.train", run_name="__main__", alter_sys=True)
