"""Local model serving (`invoke up|down --target local`): KServe v2 over REST and gRPC on OpenVINO.

``server`` is the model server process (kserve ModelServer + one OpenVINO model per precision);
``local`` starts, finds and stops it in the background for the tasks.
"""
