"""Deployment of a trained model: its ONNX files (one step, and a streaming start and step), the model card that
says how to feed them, and their rollout on ONNX Runtime."""
