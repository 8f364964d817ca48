"""Plain-tensor ops and their kernels: the bottom layer of recon (imports only ``recon.cameras``,
``recon.mesh`` and ``recon.io`` beside itself).

    silhouette.py        soft_silhouette: SoftRas soft silhouettes      (+ _torch reference, _dense oracle, _ext kernels)
    rgba.py              soft_rgba (soft z-buffer), dibr_rgba (DIB-R)  (+ rgba_soft_torch, rgba_dibr_torch, rgba_dense, rgba_ext)
    voxelize.py          voxelize(verts, faces, R, protocol): the 3D-IoU protocols' voxelizers
    voxelize_exact.py    ray-parity voxelization and generalized winding numbers
    voxelize_softras.py  SoftRas's evaluate_iou voxelization (+ voxelize_softras_ext: C++ kernel)
    impl.py              ImplChoice: torch / cpp / cuda / auto, one per kernel family
    jit.py               the one JIT loader of every C++/CUDA extension
    settings.py          RasterSettings;  unavailable.py: BackendUnavailable
    window_pairs.py      the pixel-face pair enumeration of the torch references
    csrc/                common/ (shared maths, SIMD, launch headers), silhouette/, rgba/, voxelize/

Each kernel family is declared once: its torch reference, its extension wrapper and its
``ImplChoice`` (``silhouette.CHOICE``, ``rgba.CHOICE``).
"""
