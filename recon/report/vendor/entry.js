// Entry of the vendored three.js bundle (see README.md beside it): only what recon/report/viewer.js uses.
export {
  BufferAttribute, BufferGeometry, DirectionalLight, DoubleSide, HemisphereLight, Mesh,
  MeshStandardMaterial, PerspectiveCamera, REVISION, Scene, WebGLRenderer,
} from 'three';
export { OrbitControls } from 'three/addons/controls/OrbitControls.js';
