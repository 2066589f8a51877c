/** The error of a route or condition that does not parse: where, and why. */
import { EdgeHubError, ErrorCodes } from "../errors.js";

/** A route that does not parse; `position` is the 1-based column in the route text. */
export class RouteSyntaxError extends EdgeHubError {
  readonly position: number;

  constructor(position: number, reason: string) {
    super(ErrorCodes.ROUTE_INVALID, `at column ${position}: ${reason}`);
    this.name = "RouteSyntaxError";
    this.position = position;
  }
}
