// Where things are: AWS regions (the city each stands in) and a population centre for each country users
// are drawn from. Coordinates are for the map and for choosing nearby countries; RTTs come from the data.

export interface RegionInfo {
  readonly region: string;
  readonly city: string;
  readonly country: string;
  readonly lat: number;
  readonly lon: number;
}

export const AWS_REGIONS: readonly RegionInfo[] = [
  { region: 'af-south-1', city: 'Cape Town', country: 'ZA', lat: -33.92, lon: 18.42 },
  { region: 'ap-east-1', city: 'Hong Kong', country: 'HK', lat: 22.32, lon: 114.17 },
  { region: 'ap-northeast-1', city: 'Tokyo', country: 'JP', lat: 35.68, lon: 139.69 },
  { region: 'ap-northeast-2', city: 'Seoul', country: 'KR', lat: 37.57, lon: 126.98 },
  { region: 'ap-northeast-3', city: 'Osaka', country: 'JP', lat: 34.69, lon: 135.5 },
  { region: 'ap-south-1', city: 'Mumbai', country: 'IN', lat: 19.08, lon: 72.88 },
  { region: 'ap-southeast-1', city: 'Singapore', country: 'SG', lat: 1.35, lon: 103.82 },
  { region: 'ap-southeast-2', city: 'Sydney', country: 'AU', lat: -33.87, lon: 151.21 },
  { region: 'ca-central-1', city: 'Montreal', country: 'CA', lat: 45.5, lon: -73.57 },
  { region: 'eu-central-1', city: 'Frankfurt', country: 'DE', lat: 50.11, lon: 8.68 },
  { region: 'eu-north-1', city: 'Stockholm', country: 'SE', lat: 59.33, lon: 18.07 },
  { region: 'eu-south-1', city: 'Milan', country: 'IT', lat: 45.46, lon: 9.19 },
  { region: 'eu-west-1', city: 'Dublin', country: 'IE', lat: 53.35, lon: -6.26 },
  { region: 'eu-west-2', city: 'London', country: 'GB', lat: 51.51, lon: -0.13 },
  { region: 'eu-west-3', city: 'Paris', country: 'FR', lat: 48.86, lon: 2.35 },
  { region: 'me-south-1', city: 'Bahrain', country: 'BH', lat: 26.07, lon: 50.56 },
  { region: 'sa-east-1', city: 'São Paulo', country: 'BR', lat: -23.55, lon: -46.63 },
  { region: 'us-east-1', city: 'N. Virginia', country: 'US', lat: 38.95, lon: -77.45 },
  { region: 'us-east-2', city: 'Ohio', country: 'US', lat: 39.96, lon: -82.99 },
  { region: 'us-west-1', city: 'N. California', country: 'US', lat: 37.77, lon: -122.42 },
  { region: 'us-west-2', city: 'Oregon', country: 'US', lat: 45.52, lon: -122.68 },
];

/** [ISO code, lat, lon] of each country's main population centre. */
export const COUNTRY_CENTRES: readonly (readonly [string, number, number])[] = [
  ['AE', 25.2, 55.27], ['AR', -34.6, -58.38], ['AT', 48.21, 16.37], ['AU', -33.87, 151.21], ['BE', 50.85, 4.35],
  ['BG', 42.7, 23.32], ['BH', 26.23, 50.59], ['BR', -23.55, -46.63], ['CA', 43.65, -79.38], ['CH', 47.37, 8.54],
  ['CL', -33.45, -70.67], ['CN', 31.23, 121.47], ['CO', 4.71, -74.07], ['CZ', 50.08, 14.44], ['DE', 52.52, 13.4],
  ['DK', 55.68, 12.57], ['EE', 59.44, 24.75], ['EG', 30.04, 31.24], ['ES', 40.42, -3.7], ['FI', 60.17, 24.94],
  ['FR', 48.86, 2.35], ['GB', 51.51, -0.13], ['GR', 37.98, 23.73], ['HK', 22.32, 114.17], ['HU', 47.5, 19.04],
  ['ID', -6.21, 106.85], ['IE', 53.35, -6.26], ['IL', 32.09, 34.78], ['IN', 28.61, 77.21], ['IT', 41.9, 12.5],
  ['JP', 35.68, 139.69], ['KE', -1.29, 36.82], ['KR', 37.57, 126.98], ['LT', 54.69, 25.28], ['MX', 19.43, -99.13],
  ['MY', 3.14, 101.69], ['NG', 6.52, 3.38], ['NL', 52.37, 4.9], ['NO', 59.91, 10.75], ['NZ', -36.85, 174.76],
  ['PE', -12.05, -77.04], ['PH', 14.6, 120.98], ['PK', 24.86, 67.01], ['PL', 52.23, 21.01], ['PT', 38.72, -9.14],
  ['RO', 44.43, 26.1], ['RS', 44.79, 20.45], ['SA', 24.71, 46.68], ['SE', 59.33, 18.07], ['SG', 1.35, 103.82],
  ['TH', 13.76, 100.5], ['TR', 41.01, 28.98], ['TW', 25.03, 121.57], ['UA', 50.45, 30.52], ['US', 40.71, -74.01],
  ['VN', 10.82, 106.63], ['ZA', -26.2, 28.05],
];
