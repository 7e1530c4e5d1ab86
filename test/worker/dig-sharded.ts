/** The committed diginetica-sharded model's files as an upload sends them (name -> body), for the
 * tests that put it through the registry (shards.test.ts, model-parts.test.ts). */
import digGolden from "../../models/diginetica-sharded/golden.json";
import digManifest from "../../models/diginetica-sharded/manifest.json";
import digScore0 from "../../models/diginetica-sharded/score.s0.onnx";
import digScore1 from "../../models/diginetica-sharded/score.s1.onnx";
import digScore2 from "../../models/diginetica-sharded/score.s2.onnx";
import digSimilar0 from "../../models/diginetica-sharded/similar.s0.onnx";
import digSimilar1 from "../../models/diginetica-sharded/similar.s1.onnx";
import digSimilar2 from "../../models/diginetica-sharded/similar.s2.onnx";
import digStep from "../../models/diginetica-sharded/step.onnx";
import digWeights from "../../models/diginetica-sharded/weights.bin";
import digWeights0 from "../../models/diginetica-sharded/weights.s0.bin";
import digWeights1 from "../../models/diginetica-sharded/weights.s1.bin";
import digWeights2 from "../../models/diginetica-sharded/weights.s2.bin";

export { digGolden, digManifest };

/** Every file of the version; the manifest and golden vectors as JSON text. */
export const DIG_SHARDED_FILES: Record<string, ArrayBuffer | string> = {
  "manifest.json": JSON.stringify(digManifest),
  "step.onnx": digStep,
  "weights.bin": digWeights,
  "golden.json": JSON.stringify(digGolden),
  "score.s0.onnx": digScore0,
  "score.s1.onnx": digScore1,
  "score.s2.onnx": digScore2,
  "similar.s0.onnx": digSimilar0,
  "similar.s1.onnx": digSimilar1,
  "similar.s2.onnx": digSimilar2,
  "weights.s0.bin": digWeights0,
  "weights.s1.bin": digWeights1,
  "weights.s2.bin": digWeights2,
};
