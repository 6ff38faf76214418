"""Model optimization (`invoke optimize`): OpenVINO FP32/FP16/INT8 IRs, checks, OVMS publication.

Import the submodules directly; the package stays light so the model server can use
`workloads.optimize.repository` without loading NNCF.
"""
