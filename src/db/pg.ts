/**
 * The hot path (`src/engine/stream*.ts`) imports its PostgreSQL helpers
 * from here; they live with the PostgreSQL store in `src/store/postgres/`.
 */
export { translatePgError, withTransaction } from '../store/postgres/client';
