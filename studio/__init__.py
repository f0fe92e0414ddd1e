"""The studio: a Gradio web UI over the generator, projection, editing and the trainer.

`studio.backend.Backend` owns the loaded model; one module per tab (`tab_generate`, `tab_animate`,
`tab_edit`, `tab_train`, `tab_model`) holds plain handlers plus the UI that wires them;
`studio.app.build_app` assembles the tabs.
"""
