/** The parts of jstat (no bundled types) that src/stats uses. */
declare module "jstat" {
  interface Continuous {
    cdf(x: number, ...params: number[]): number;
    inv(p: number, ...params: number[]): number;
  }
  export const jStat: {
    normal: Continuous;
    chisquare: Continuous;
  };
  const _default: { normal: Continuous; chisquare: Continuous };
  export default _default;
}
