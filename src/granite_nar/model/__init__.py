"""The model, in data-flow order: configuration → encoder → projector → editor → the NAR and AR heads.

``ctc`` holds the CTC pieces both ends of the editor use (greedy collapse, insertion slots, the losses);
``modeling_audio`` the audio side shared by the NAR model and its autoregressive counterpart.
"""
