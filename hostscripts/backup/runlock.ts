/** The run lock moved to common/ (the binlog archiver takes one too); backup's imports stay as they were. */
export * from "../common/runlock";
