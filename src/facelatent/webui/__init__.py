"""The web editor: `facelatent serve`.

`facelatent.webui.service` holds the logic (faces in, edits, scores, files out) and imports no
UI toolkit; `facelatent.webui.state` the values it passes (a user's face, the sliders' state);
`facelatent.webui.directions` builds the sliders; `facelatent.webui.uploads` checks what the
browser sends; `facelatent.webui.load` builds the one service per process;
`facelatent.webui.app` is the Gradio front end, the only module that imports Gradio (installed
with ``pip install 'facelatent[web]'``).
"""
