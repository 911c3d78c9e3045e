"""One volume through one backend: preprocess -> sliding-window inference -> postprocess, the
backends (torch, onnxruntime), the backend factory and the ONNX export."""
